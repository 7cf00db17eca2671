ALTER TABLE `users` RENAME TO `legacy_users`;--> statement-breakpoint
DROP INDEX `users_email`;--> statement-breakpoint
CREATE TABLE `users` (
	`id` integer PRIMARY KEY NOT NULL,
	`email` text NOT NULL,
	`name` text
);
--> statement-breakpoint
CREATE UNIQUE INDEX `users_email` ON `users` (`email`);--> statement-breakpoint
CREATE UNIQUE INDEX `legacy_users_email` ON `legacy_users` (`email`);