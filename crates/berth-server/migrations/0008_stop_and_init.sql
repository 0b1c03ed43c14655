-- How a pod's processes start and stop: an init as PID 1, the signal a stop sends first
-- (the pod's or its image's, known once started), and the grace before SIGKILL (NULL: the
-- server's default). Pods from before ran without an init.
ALTER TABLE containers ADD COLUMN init INTEGER NOT NULL DEFAULT 0;
ALTER TABLE containers ADD COLUMN stop_signal TEXT;
ALTER TABLE containers ADD COLUMN stop_grace_seconds INTEGER;
