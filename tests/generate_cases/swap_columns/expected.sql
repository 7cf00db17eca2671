ALTER TABLE `t` RENAME COLUMN `a` TO `__rename_a`;--> statement-breakpoint
ALTER TABLE `t` RENAME COLUMN `b` TO `__rename_b`;--> statement-breakpoint
ALTER TABLE `t` RENAME COLUMN `__rename_a` TO `b`;--> statement-breakpoint
ALTER TABLE `t` RENAME COLUMN `__rename_b` TO `a`;