PRAGMA foreign_keys=OFF;--> statement-breakpoint
CREATE TABLE `__new_grants` (
	`user_id` integer NOT NULL,
	`scope` text NOT NULL,
	PRIMARY KEY(`user_id`, `scope`)
);
--> statement-breakpoint
INSERT INTO `__new_grants`("user_id", "scope") SELECT "user_id", "scope" FROM `grants`;--> statement-breakpoint
DROP TABLE `grants`;--> statement-breakpoint
ALTER TABLE `__new_grants` RENAME TO `grants`;--> statement-breakpoint
PRAGMA foreign_keys=ON;