PRAGMA foreign_keys=OFF;--> statement-breakpoint
CREATE TABLE `__new_history` (
	`seq` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`op` text NOT NULL,
	`amount` integer DEFAULT 0 NOT NULL
);
--> statement-breakpoint
INSERT INTO `__new_history`("seq", "op", "amount") SELECT "seq", "op", "amount" FROM `history`;--> statement-breakpoint
DELETE FROM sqlite_sequence WHERE name = '__new_history';--> statement-breakpoint
INSERT INTO sqlite_sequence (name, seq) SELECT '__new_history', seq FROM sqlite_sequence WHERE name = 'history';--> statement-breakpoint
DROP TABLE `history`;--> statement-breakpoint
ALTER TABLE `__new_history` RENAME TO `history`;--> statement-breakpoint
PRAGMA foreign_keys=ON;