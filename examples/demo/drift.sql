-- A hotfix someone ran by hand on one shard only: the demo's plan calls this shard out.
ALTER TABLE orders ADD KEY placed_at (placed_at);
