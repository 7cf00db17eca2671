CREATE TABLE `accounts` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`email` text NOT NULL,
	`balance` real DEFAULT 0.5 NOT NULL,
	`created_at` integer DEFAULT (unixepoch()) NOT NULL,
	`note`,
	CONSTRAINT `accounts_email_unique` UNIQUE(`email`),
	CONSTRAINT "balance_not_negative" CHECK(balance >= 0)
);
--> statement-breakpoint
CREATE TABLE `memberships` (
	`account_id` integer NOT NULL,
	`team` text NOT NULL,
	`role` text DEFAULT 'member' NOT NULL,
	PRIMARY KEY(`account_id`, `team`),
	FOREIGN KEY (`account_id`) REFERENCES `accounts`(`id`) ON UPDATE no action ON DELETE cascade,
	CONSTRAINT "memberships_team_check" CHECK(length(team) > 0)
);
--> statement-breakpoint
CREATE UNIQUE INDEX `accounts_admin` ON `accounts` (`email`) WHERE note = 'admin';--> statement-breakpoint
CREATE INDEX `memberships_team` ON `memberships` (`team`,`role`);