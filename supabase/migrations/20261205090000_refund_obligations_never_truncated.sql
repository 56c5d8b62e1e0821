-- Refunds owed are audited row by row, so, like every audited table, they are never truncated:
-- a truncate would remove the obligations and leave no audit row behind.
create trigger refuse_unaudited_truncate
before truncate
on private.refund_obligations
for each statement
execute function private.refuse_unaudited_truncate();
