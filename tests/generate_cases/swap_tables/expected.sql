ALTER TABLE `a` RENAME TO `__rename_a`;--> statement-breakpoint
ALTER TABLE `b` RENAME TO `__rename_b`;--> statement-breakpoint
ALTER TABLE `__rename_a` RENAME TO `b`;--> statement-breakpoint
ALTER TABLE `__rename_b` RENAME TO `a`;