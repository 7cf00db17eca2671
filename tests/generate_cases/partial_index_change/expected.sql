DROP INDEX `jobs_open`;--> statement-breakpoint
CREATE INDEX `jobs_open` ON `jobs` (`state`) WHERE state IN ('open', 'retry');