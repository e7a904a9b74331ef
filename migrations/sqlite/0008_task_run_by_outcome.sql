-- Closing an outcome (feedback, an order's settlement, the interrupted-execution sweep) finds its
-- run by outcome id: without an index that is a scan of every run.
CREATE INDEX task_runs_by_outcome ON task_runs (outcome_id);
