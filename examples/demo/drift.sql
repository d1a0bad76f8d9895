-- A hotfix someone ran by hand on one shard only: the demo's plan calls this shard out.
ALTER TABLE customers ADD KEY created_at (created_at);
