-- Where the control plane reaches a worker's agent (HOST:PORT; NULL for a control plane's
-- own machine), and whether pods may be placed on a node at all (`berth server --no-pods`).
ALTER TABLE nodes ADD COLUMN agent_address TEXT;
ALTER TABLE nodes ADD COLUMN schedulable INTEGER NOT NULL DEFAULT 1;
