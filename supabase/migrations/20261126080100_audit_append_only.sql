-- The audit trail, part 2: append-only, for every role, the owner included.
--
-- No API or staff role holds UPDATE, DELETE or TRUNCATE on payment_audit_logs (they were
-- never granted; revoked again here). The owner holds them by ownership, so triggers refuse:
--   * UPDATE, except sealing: filling in the hashes of an unsealed row, once, with nothing
--     else changed (whether the hashes are right is what `payguard audit verify` checks);
--   * DELETE, except of sealed rows older than the retention period (10 years), which only
--     private.purge_audit_logs() does on purpose (it records the purge);
--   * TRUNCATE, always.
-- A superuser, or an owner who disables the triggers, can still change rows: the hash chain
-- is what detects that (`payguard audit verify`).

revoke update, delete, truncate, references, trigger on public.payment_audit_logs
from public, anon, authenticated, service_role, payment_service, escrow_service, admin, auditor;

/**
 * The canonical serialization of an audit row that its row_hash covers: a JSON array of its
 * columns in a fixed order (the time as epoch seconds with microseconds, so that no session
 * setting changes it). `payguard audit verify` computes the same text independently.
 */
create function private.audit_row_canonical(l public.payment_audit_logs) returns text
language sql
immutable
set search_path = ''
as $$
  select jsonb_build_array(
    l.seq, l.id, extract(epoch from l.timestamp), l.operation, l.entity_type, l.entity_id,
    l.user_id, l.user_role, l.ip_address, l.user_agent, l.old_values, l.new_values, l.success,
    l.error_message, l.metadata
  )::text
$$;

/**
 * How long audit rows are kept: 10 years, the payment policy's retention (PCI DSS 10.5.1
 * asks for at least 12 months). A constant, not a setting: shortening it takes a migration.
 */
create function private.audit_retention() returns interval
language sql
immutable
set search_path = ''
as $$
  select interval '10 years'
$$;

/** BEFORE UPDATE OR DELETE on payment_audit_logs, for each row. */
create function private.guard_audit_log_row() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  retention interval := private.audit_retention();
begin
  if tg_op = 'UPDATE' then
    if old.row_hash is null and old.prev_hash is null
      and new.row_hash is not null
      and (new.seq, new.id, new.timestamp, new.operation, new.entity_type, new.entity_id,
        new.user_id, new.user_role, new.ip_address, new.user_agent, new.old_values,
        new.new_values, new.success, new.error_message, new.metadata)
      is not distinct from
      (old.seq, old.id, old.timestamp, old.operation, old.entity_type, old.entity_id,
        old.user_id, old.user_role, old.ip_address, old.user_agent, old.old_values,
        old.new_values, old.success, old.error_message, old.metadata)
      then
      return new;
    end if;
    raise exception 'payment_audit_logs is append-only: row % cannot be changed', old.seq
    using errcode = '42501',
    hint = 'only the sealer fills in the hashes of an unsealed row, once';
  end if;
  if old.row_hash is not null and old.timestamp < now() - retention then
    return old;
  end if;
  raise exception 'payment_audit_logs is append-only: row % is kept until %',
  old.seq, old.timestamp + retention
  using errcode = '42501',
  hint = 'rows older than the retention period are removed only by private.purge_audit_logs()';
end
$$;

create function private.refuse_audit_log_truncate() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  raise exception 'payment_audit_logs is append-only: it is never truncated'
  using errcode = '42501';
end
$$;

revoke all on function private.audit_row_canonical(public.payment_audit_logs) from public;
revoke all on function private.audit_retention() from public;
revoke all on function private.guard_audit_log_row() from public;
revoke all on function private.refuse_audit_log_truncate() from public;

-- A seal (the only update allowed) does not call the trigger at all: the WHEN condition,
-- evaluated without a function call, lets it through. Any other update calls it, and is
-- refused.
create trigger guard_audit_log_update
before update on public.payment_audit_logs
for each row when (
  not (
    old.row_hash is null and old.prev_hash is null and new.row_hash is not null
    and (
      new.seq, new.id, new.timestamp, new.operation, new.entity_type, new.entity_id,
      new.user_id, new.user_role, new.ip_address, new.user_agent, new.old_values,
      new.new_values, new.success, new.error_message, new.metadata
    )
    is not distinct from
    (
      old.seq, old.id, old.timestamp, old.operation, old.entity_type, old.entity_id,
      old.user_id, old.user_role, old.ip_address, old.user_agent, old.old_values,
      old.new_values, old.success, old.error_message, old.metadata
    )
  )
)
execute function private.guard_audit_log_row();

create trigger guard_audit_log_delete
before delete on public.payment_audit_logs
for each row execute function private.guard_audit_log_row();

create trigger refuse_audit_log_truncate
before truncate on public.payment_audit_logs
for each statement execute function private.refuse_audit_log_truncate();
