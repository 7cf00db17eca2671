ALTER TABLE `readings` RENAME COLUMN `value` TO `measurement`;--> statement-breakpoint
PRAGMA foreign_keys=OFF;--> statement-breakpoint
CREATE TABLE `__new_readings` (
	`id` integer PRIMARY KEY NOT NULL,
	`measurement` real NOT NULL
);
--> statement-breakpoint
INSERT INTO `__new_readings`("id", "measurement") SELECT "id", "measurement" FROM `readings`;--> statement-breakpoint
DROP TABLE `readings`;--> statement-breakpoint
ALTER TABLE `__new_readings` RENAME TO `readings`;--> statement-breakpoint
PRAGMA foreign_keys=ON;