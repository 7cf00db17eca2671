DROP INDEX `by_x`;--> statement-breakpoint
CREATE TABLE `b` (
	`id` integer PRIMARY KEY NOT NULL,
	`x` integer
);
--> statement-breakpoint
CREATE INDEX `by_x` ON `b` (`x`);