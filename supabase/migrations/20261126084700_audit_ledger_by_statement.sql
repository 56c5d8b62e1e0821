-- The ledger changes several rows per statement: a release inserts two transfers and their
-- four entries, and updates the balances of the escrow's and the payee's accounts in one
-- statement. Its audit rows are written per statement, from the statement's rows
-- (transition tables), in one insert: still one audit row per changed row, with the same
-- columns as the per-row capture, for a fraction of its cost. Transfers and entries are only
-- ever inserted (updates and deletes are refused); accounts are inserted one at a time and
-- keep the per-row capture for that.

/**
 * AFTER INSERT, for each statement, on tables whose rows are only inserted: one audit row
 * per new row, the same as private.capture_audit_row() writes. The trigger's argument names
 * the table's key column; its transition table is called `inserted`.
 */
create function private.capture_audit_inserts() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  actor private.audit_actor := private.audit_actor();
begin
  perform pg_catalog.pg_current_xact_id();
  insert into public.payment_audit_logs (
    seq, timestamp, operation, entity_type, entity_id, user_id, user_role, ip_address,
    user_agent, old_values, new_values, success, metadata
  )
  select
    nextval('private.audit_log_seq'), now(), 'INSERT', tg_table_name,
    added.row_values ->> tg_argv[0], actor.user_id, actor.user_role, actor.ip_address,
    actor.user_agent, null, added.row_values, true, actor.metadata
  from (
    select private.audit_redact(tg_table_name, to_jsonb(i)) as row_values from inserted as i
  ) as added;
  return null;
end
$$;

/**
 * AFTER UPDATE, for each statement: one audit row per updated row, its old and new values
 * paired by the key column the trigger's argument names. Transition tables `removed` (old
 * rows) and `added` (new rows).
 */
create function private.capture_audit_updates() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  actor private.audit_actor := private.audit_actor();
begin
  perform pg_catalog.pg_current_xact_id();
  insert into public.payment_audit_logs (
    seq, timestamp, operation, entity_type, entity_id, user_id, user_role, ip_address,
    user_agent, old_values, new_values, success, metadata
  )
  select
    nextval('private.audit_log_seq'), now(), 'UPDATE', tg_table_name,
    after_change.row_values ->> tg_argv[0], actor.user_id, actor.user_role, actor.ip_address,
    actor.user_agent, before_change.row_values, after_change.row_values, true, actor.metadata
  from (
    select private.audit_redact(tg_table_name, to_jsonb(r)) as row_values from removed as r
  ) as before_change
  join (
    select private.audit_redact(tg_table_name, to_jsonb(a)) as row_values from added as a
  ) as after_change
    on (before_change.row_values ->> tg_argv[0]) = (after_change.row_values ->> tg_argv[0]);
  return null;
end
$$;

revoke all on function private.capture_audit_inserts() from public;
revoke all on function private.capture_audit_updates() from public;

drop trigger audit_trail on private.ledger_transfers;
create trigger audit_trail
after insert on private.ledger_transfers
referencing new table as inserted
for each statement execute function private.capture_audit_inserts('id');

drop trigger audit_trail on private.ledger_entries;
create trigger audit_trail
after insert on private.ledger_entries
referencing new table as inserted
for each statement execute function private.capture_audit_inserts('id');

drop trigger audit_trail on private.ledger_accounts;
create trigger audit_trail
after insert or delete on private.ledger_accounts
for each row execute function private.capture_audit_row('id');
create trigger audit_trail_updates
after update on private.ledger_accounts
referencing old table as removed new table as added
for each statement execute function private.capture_audit_updates('id');
