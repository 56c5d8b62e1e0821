-- Audit trail: chain
--
-- The audit log is append-only for every role, the owner included; a hash chain sealed
-- asynchronously makes any change after the fact visible; rows are kept ten years; auditors read
-- an entity's history. The log itself, and what writes it, are audit_capture.sql's.
--
-- Sections, in this order: append-only; the hash chain; sealing on a schedule; retention; an
-- entity's history.
--
-- This file is the current definition of everything in its domain. Change it first, then
-- write the migration that makes the same change (docs/schema-changes.md); `payguard schema
-- check` proves that the migrations and these files build the same database.
-- See also: docs/audit-trail.md, tests/sql/audit_chain/, tests/py/test_audit_chain.py

set local check_function_bodies = off;

-- Section: append-only
--
-- No role changes or deletes an audit row, the owner included: the sealer only fills in the
-- hashes of an unsealed row, once, and only private.purge_audit_logs() removes rows, once they
-- are sealed and older than the retention period. The table is never truncated.

comment on column public.payment_audit_logs.id is
'A random UUID of the row''s own (gen_random_uuid()), never one an insert brings.';

/**
 * BEFORE DELETE and AFTER UPDATE on payment_audit_logs, for each row: an update passes only
 * when it fills in the hashes (32 bytes each) of an unsealed row and changes nothing else; a
 * delete only of a sealed row older than the retention period. Anything else is refused
 * (42501).
 */
create or replace function private.guard_audit_log_row() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  retention interval := private.audit_retention();
begin
  if tg_op = 'UPDATE' then
    if old.row_hash is null and old.prev_hash is null
      and coalesce(octet_length(new.row_hash), 0) = 32
      and coalesce(octet_length(new.prev_hash), 0) = 32
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
    hint = 'only the sealer fills in the hashes of an unsealed row, once, 32 bytes each';
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

/** BEFORE TRUNCATE on payment_audit_logs: never truncated. */
create or replace function private.refuse_audit_log_truncate() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  raise exception 'payment_audit_logs is append-only: it is never truncated'
  using errcode = '42501';
end
$$;

create trigger guard_audit_log_delete
before delete on public.payment_audit_logs
for each row execute function private.guard_audit_log_row();

-- An update of a row's record itself is refused; an update of its hashes passes only when it
-- seals an unsealed row.
create trigger guard_audit_log_record
after update of
seq, id, timestamp, operation, entity_type, entity_id, user_id, user_role, ip_address,
user_agent, old_values, new_values, success, error_message, metadata
on public.payment_audit_logs
for each row execute function private.guard_audit_log_row();

create trigger guard_audit_log_seal
after update of prev_hash, row_hash on public.payment_audit_logs
for each row when (
  not (
    old.row_hash is null and old.prev_hash is null
    and coalesce(octet_length(new.row_hash), 0) = 32
    and coalesce(octet_length(new.prev_hash), 0) = 32
  )
)
execute function private.guard_audit_log_row();

create trigger refuse_audit_log_truncate
before truncate on public.payment_audit_logs
for each statement execute function private.refuse_audit_log_truncate();

-- Section: the hash chain, sealed asynchronously
--
-- Writers never wait for one another: a row only draws its seq. A sealer then hashes rows in
-- seq order, row_hash = sha256(prev_hash || canonical serialization), once no transaction
-- that could still insert a lower seq is running. It works with a fence: each call notes
-- the highest seq drawn so far, then takes a transaction id of its own; a later call, once
-- every transaction with a lower id has ended, seals every row up to the noted seq. This
-- holds because a row draws its seq after its transaction has its id, from a sequence
-- without cache, and transaction ids are handed out in order: a transaction that drew a seq
-- up to the fence got its id before the sealer got its own.
-- A seq that no committed row holds (its transaction rolled back) is recorded as skipped.
--
-- Run it often: where pg_cron is installed, deploying schedules it (the next section); else
-- `payguard audit seal --follow`.

create table private.audit_seal_fence (
  singleton boolean primary key default true check (singleton),
  through_seq bigint not null,
  below_xid xid8 not null,
  noted_at timestamptz not null default clock_timestamp()
);

comment on table private.audit_seal_fence is
'The sealer''s fence: rows up to through_seq are sealed once every transaction with an id '
'below below_xid has ended.';

create table private.audit_seals (
  through_seq bigint primary key,
  head_hash bytea not null check (octet_length(head_hash) = 32),
  sealed_rows integer not null check (sealed_rows >= 0),
  skipped_seqs int8multirange not null default '{}',
  sealed_at timestamptz not null default clock_timestamp()
);

comment on table private.audit_seals is
'One row per sealing: the chain was sealed through through_seq, ending in head_hash; the '
'seqs in skipped_seqs hold no row (their transactions rolled back). Append-only.';

/**
 * The canonical serialization of an audit row that its row_hash covers: a JSON array of its
 * columns in a fixed order (the time as epoch seconds with microseconds, so that no session
 * setting changes it). `payguard audit verify` computes the same text independently.
 */
create or replace function private.audit_row_canonical(l public.payment_audit_logs)
returns text
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

/** The chain's head: the last seal, else the last purge, else the start (zero hash). */
create or replace function private.audit_chain_head(out through_seq bigint, out head_hash bytea)
language sql
stable
set search_path = ''
as $$
  select h.through_seq, h.head_hash from (
    select s.through_seq, s.head_hash from private.audit_seals as s
    union all
    select p.through_seq, p.through_hash from private.audit_purges as p
    union all
    select 0, decode(repeat('00', 32), 'hex')
  ) as h
  order by h.through_seq desc
  limit 1
$$;

-- The sealer reads the rows it seals in one pass, from the primary key, and hashes each row as
-- the query hands it over, in seq order, without gathering rows into arrays first. Scalars are
-- quoted with to_json(), which writes the same JSON text as jsonb_build_array() (the text
-- private.audit_row_canonical makes) without building a jsonb value first.

/**
 * Seal what can be sealed: at most `max_rows` rows per call. Returns how many rows were
 * sealed. Concurrent calls do not collide: one seals, the others return 0. It must run in
 * a transaction of its own (autocommit), since its transaction id is part of the fence.
 */
create or replace function private.seal_audit_log(max_rows integer default 100000)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  drawn bigint;
  own_xid xid8;
  fence private.audit_seal_fence;
  head record;
  next_seq bigint;
  prev bytea;
  pending record;
  skipped int8multirange;
  seqs bigint [] := '{}'::bigint [];
  ctids tid [] := '{}'::tid [];
  updated bigint;
  hashes bytea [] := '{}'::bytea [];
  sealed_through bigint;
begin
  if pg_current_xact_id_if_assigned() is not null then
    raise exception 'private.seal_audit_log() runs in a transaction of its own'
    using errcode = '25001', hint = 'call it in autocommit mode, not after other writes';
  end if;
  if not pg_try_advisory_xact_lock(hashtextextended('payguard.seal_audit_log', 0)) then
    return 0;
  end if;
  -- First the highest seq drawn, then an id of our own: in this order, a transaction that
  -- drew a seq up to `drawn` has a lower id than ours.
  select case when s.is_called then s.last_value else 0 end into drawn
  from private.audit_log_seq as s;
  own_xid := pg_current_xact_id();

  select * into fence from private.audit_seal_fence;
  if not found then
    insert into private.audit_seal_fence (through_seq, below_xid) values (drawn, own_xid);
    return 0;
  end if;
  -- Every transaction with a lower id than the fence's has ended (the oldest one running
  -- is not older than it).
  if pg_snapshot_xmin(pg_current_snapshot()) < fence.below_xid then
    return 0;
  end if;

  select * into head from private.audit_chain_head();
  -- One pass over the rows in seq order: each row's canonical bytes, hashed onto the chain
  -- as it is read. Gaps and previous hashes are worked out set-based afterwards.
  prev := head.head_hash;
  for pending in
    select
      l.seq,
      l.ctid as row_ctid,
      -- private.audit_row_canonical(l), the same text written out: a function call per row
      -- (with its search path set) cost more than the serialization itself. to_json() of a
      -- scalar is the JSON text that jsonb_build_array() gives it.
      convert_to(concat(
        '[', l.seq, ', ', to_json(l.id), ', ', extract(epoch from l.timestamp), ', ',
        to_json(l.operation), ', ', to_json(l.entity_type), ', ', to_json(l.entity_id),
        ', ', coalesce(to_json(l.user_id)::text, 'null'), ', ', to_json(l.user_role), ', ',
        coalesce(to_json(l.ip_address)::text, 'null'), ', ',
        coalesce(to_json(l.user_agent)::text, 'null'), ', ',
        coalesce(l.old_values::text, 'null'), ', ', coalesce(l.new_values::text, 'null'), ', ',
        case when l.success then 'true' else 'false' end, ', ',
        coalesce(to_json(l.error_message)::text, 'null'), ', ',
        coalesce(l.metadata::text, 'null'), ']'
      ), 'UTF8') as body
    from public.payment_audit_logs as l
    where l.seq > head.through_seq and l.seq <= fence.through_seq
    order by l.seq
    limit max_rows
  loop
    prev := sha256(prev || pending.body);
    seqs := seqs || pending.seq;
    ctids := ctids || pending.row_ctid;
    hashes := hashes || prev;
  end loop;
  select coalesce(
    range_agg(int8range(gap.after_seq + 1, gap.seq)) filter (where gap.seq > gap.after_seq + 1),
    '{}'::int8multirange
  )
  into skipped
  from (
    select
      s.seq,
      lag(s.seq, 1, head.through_seq) over (order by s.position) as after_seq
    from unnest(seqs) with ordinality as s (seq, position)
  ) as gap;
  next_seq := coalesce(seqs[cardinality(seqs)], head.through_seq) + 1;

  if cardinality(seqs) < max_rows then
    -- Everything up to the fence: what no row holds up to there was skipped.
    sealed_through := fence.through_seq;
    if sealed_through >= next_seq then
      skipped := skipped + int8multirange(int8range(next_seq, sealed_through + 1));
    end if;
  else
    sealed_through := next_seq - 1;
  end if;
  if sealed_through <= head.through_seq then
    update private.audit_seal_fence set through_seq = drawn, below_xid = own_xid,
      noted_at = clock_timestamp();
    return 0;
  end if;

  -- Each row is found again by where it was read (no index lookup); nothing else changes an
  -- unsealed row, and the seq is checked as well. The seq range keeps the plan to the rows
  -- being sealed: without it, the planner may join against the whole log.
  update public.payment_audit_logs as l
  set prev_hash = u.prev_hash, row_hash = u.row_hash
  from (
    select
      s.seq,
      s.row_ctid,
      s.row_hash,
      lag(s.row_hash, 1, head.head_hash) over (order by s.position) as prev_hash
    from unnest(seqs, ctids, hashes) with ordinality as s (seq, row_ctid, row_hash, position)
  ) as u
  where
    l.ctid = u.row_ctid and l.seq = u.seq
    and l.seq >= seqs[1] and l.seq <= seqs[cardinality(seqs)];
  get diagnostics updated = row_count;
  if updated <> cardinality(seqs) then
    raise exception 'sealing: % of % audit rows could be sealed', updated, cardinality(seqs)
    using errcode = '40001', hint = 'an audit row changed while it was being sealed; retry';
  end if;
  insert into private.audit_seals (through_seq, head_hash, sealed_rows, skipped_seqs)
  values (sealed_through, prev, cardinality(seqs), skipped);
  if sealed_through = fence.through_seq then
    update private.audit_seal_fence set through_seq = drawn, below_xid = own_xid,
      noted_at = clock_timestamp();
  end if;
  return cardinality(seqs);
end
$$;

/** BEFORE UPDATE, DELETE or TRUNCATE on private.audit_seals and private.audit_purges. */
create or replace function private.refuse_audit_record_change() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  raise exception '%.% is append-only', tg_table_schema, tg_table_name using errcode = '42501';
end
$$;

-- A seal is a record: never changed, deleted or truncated.
create trigger refuse_audit_record_change
before update or delete on private.audit_seals
for each row execute function private.refuse_audit_record_change();

create trigger refuse_audit_record_truncate
before truncate on private.audit_seals
for each statement execute function private.refuse_audit_record_change();

-- Section: sealing on a schedule
--
-- Where pg_cron is installed in this database (on Supabase once the project enables it, and
-- in the embedded cluster's `postgres` database), deploying schedules the sealer: nothing is
-- left unsealed because no one remembered to run it. pg_cron starts jobs at most once a
-- minute before version 1.5, and a seal needs two calls (the first notes a fence, the second
-- seals up to it), so the job makes two calls, each in a transaction of its own: every row
-- committed before a run is sealed by it, and a row waits a minute at most. (A job that kept
-- sealing through the minute, sleeping between calls, would hold up every DROP DATABASE of
-- the cluster while it slept: a sleeping backend does not answer the barrier that a drop
-- waits for.)
--
-- A second job checks the backlog every minute, apart from the sealer so that a stuck
-- sealer is noticed: when the oldest unsealed row is older than `audit_seal_alert_seconds`,
-- it raises an `audit_seal_backlog` security alert, at most one per that many seconds.
-- `payguard audit status` reports the same figures.

insert into private.settings (key, value, description)
values (
  'audit_seal_alert_seconds', '300',
  'An audit row still unsealed this many seconds after it was written raises a security '
  || 'alert (audit_seal_backlog), at most one per this many seconds while the backlog lasts.'
);

/**
 * The sealing backlog: the unsealed rows, the time the oldest was written, the last seal,
 * the alert threshold, and the pg_cron jobs that seal (none where pg_cron is not installed).
 */
create or replace function private.audit_seal_status(
  out unsealed_rows bigint,
  out oldest_unsealed_at timestamptz,
  out sealed_through bigint,
  out last_sealed_at timestamptz,
  out alert_after_seconds integer,
  out scheduled_jobs text[]
)
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  head record;
begin
  select * into head from private.audit_chain_head();
  sealed_through := head.through_seq;
  select count(*), min(l.timestamp) into unsealed_rows, oldest_unsealed_at
  from public.payment_audit_logs as l
  where l.seq > head.through_seq;
  select max(s.sealed_at) into last_sealed_at from private.audit_seals as s;
  alert_after_seconds := private.setting('audit_seal_alert_seconds')::integer;
  scheduled_jobs := '{}';
  if exists (select from pg_catalog.pg_extension as e where e.extname = 'pg_cron') then
    -- Dynamic, its schema named apart: the cron schema exists only where the extension does.
    execute format(
      'select coalesce(array_agg(j.jobname || '': '' || j.schedule || '' '' || j.command '
      || 'order by j.jobname), ''{}'') from %I.job as j '
      || 'where j.jobname like ''payguard-audit-%%'' and j.active',
      'cron'
    )
    into scheduled_jobs;
  end if;
end
$$;

/**
 * pg_cron's check: raise an audit_seal_backlog security alert when the oldest unsealed
 * audit row is older than `audit_seal_alert_seconds`, unless one was raised within that
 * many seconds. Returns true when it raised one.
 */
create or replace function private.check_audit_seal_backlog() returns boolean
language plpgsql
security definer
set search_path = ''
as $$
declare
  backlog record;
  threshold interval;
begin
  select * into backlog from private.audit_seal_status();
  threshold := make_interval(secs => backlog.alert_after_seconds);
  if backlog.oldest_unsealed_at is null
    or backlog.oldest_unsealed_at > now() - threshold
    or exists (
      select from public.security_alerts as a
      where a.kind = 'audit_seal_backlog' and a.created_at >= now() - threshold
    ) then
    return false;
  end if;
  perform private.raise_security_alert(
    'audit_seal_backlog', null, 'audit.seal',
    jsonb_build_object(
      'unsealed_rows', backlog.unsealed_rows,
      'oldest_unsealed_at', backlog.oldest_unsealed_at,
      'sealed_through', backlog.sealed_through,
      'last_sealed_at', backlog.last_sealed_at,
      'alert_after_seconds', backlog.alert_after_seconds
    )
  );
  return true;
end
$$;

/**
 * Schedule the sealer and the backlog check with pg_cron, where the extension is installed
 * in this database; a job of the same name is replaced, so it is safe to run again. Returns
 * what it did.
 */
create or replace function private.schedule_audit_sealer() returns text
language plpgsql
set search_path = ''
as $$
declare
  instead text := 'seal with `payguard audit seal --follow`';
  sealer text := private.schedule_job(
    'payguard-audit-sealer', '* * * * *',
    'begin; select private.seal_audit_log(); commit; '
    || 'begin; select private.seal_audit_log(); commit;',
    instead
  );
begin
  if sealer not like 'scheduled%' then
    return sealer;
  end if;
  perform private.schedule_job(
    'payguard-audit-seal-check', '* * * * *', 'select private.check_audit_seal_backlog()',
    instead
  );
  return sealer || ' and payguard-audit-seal-check';
end
$$;

select private.schedule_audit_sealer();

-- Section: retention
--
-- Audit rows are kept 10 years (private.audit_retention). After that,
-- private.purge_audit_logs() removes them: only sealed rows, only from the start of the chain
-- (so what remains still verifies from the recorded purge point), and it records each run
-- twice: in private.audit_purges, and as an audit row of its own.

/**
 * How long audit rows are kept: 10 years, the payment policy's retention (PCI DSS 10.5.1
 * asks for at least 12 months). A constant, not a setting: shortening it takes a migration.
 */
create or replace function private.audit_retention() returns interval
language sql
immutable
set search_path = ''
as $$
  select interval '10 years'
$$;

create table private.audit_purges (
  through_seq bigint primary key,
  through_hash bytea not null check (octet_length(through_hash) = 32),
  purged_rows bigint not null check (purged_rows > 0),
  older_than timestamptz not null,
  purged_by text not null,
  purged_at timestamptz not null default clock_timestamp()
);

comment on table private.audit_purges is
'Retention: audit rows up to through_seq (older than older_than) were removed; the chain '
'goes on from through_hash. Written only by private.purge_audit_logs(). Append-only.';

-- A purge is a record: never changed, deleted or truncated.
create trigger refuse_audit_record_change
before update or delete on private.audit_purges
for each row execute function private.refuse_audit_record_change();

create trigger refuse_audit_record_truncate
before truncate on private.audit_purges
for each statement execute function private.refuse_audit_record_change();

/**
 * Remove the sealed audit rows older than the retention period, from the start of the
 * chain up to the first row that is newer or not yet sealed. Returns what it did.
 */
create or replace function private.purge_audit_logs() returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  cutoff timestamptz := now() - private.audit_retention();
  stop_seq bigint;
  last_row public.payment_audit_logs;
  purged bigint;
  actor private.audit_actor := private.audit_actor();
  summary jsonb;
begin
  -- One purge at a time, and none while the sealer works.
  perform pg_advisory_xact_lock(hashtextextended('payguard.seal_audit_log', 0));
  select min(l.seq) into stop_seq from public.payment_audit_logs as l
  where l.timestamp >= cutoff or l.row_hash is null;
  select * into last_row from public.payment_audit_logs as l
  where stop_seq is null or l.seq < stop_seq
  order by l.seq desc
  limit 1;
  if last_row.seq is null or last_row.timestamp >= cutoff or last_row.row_hash is null then
    summary := jsonb_build_object('purged_rows', 0, 'older_than', cutoff);
  else
    delete from public.payment_audit_logs as l where l.seq <= last_row.seq;
    get diagnostics purged = row_count;
    insert into private.audit_purges (through_seq, through_hash, purged_rows, older_than, purged_by)
    values (last_row.seq, last_row.row_hash, purged, cutoff, coalesce(actor.user_role, 'unknown'));
    summary := jsonb_build_object(
      'purged_rows', purged, 'through_seq', last_row.seq, 'older_than', cutoff
    );
  end if;
  insert into public.payment_audit_logs (
    operation, entity_type, entity_id, user_id, user_role, ip_address, user_agent,
    new_values, success, metadata
  )
  values (
    'PURGE', 'payment_audit_logs', coalesce(last_row.seq::text, 'none'), actor.user_id,
    actor.user_role, actor.ip_address, actor.user_agent, summary, true, actor.metadata
  );
  return summary;
end
$$;

-- Section: an entity's history, for auditors
--
-- Every audit row of every transaction that touched the entity (its own rows, the ledger
-- postings, escrow balances, disputes, processor charges, refused calls), in chain order.
--
-- A transaction's rows share its id (metadata.transaction) and its start time (`timestamp`
-- is now()), so they are found through the index on the time: no index on the transaction
-- id (an expression on every insert's metadata) is kept up to date for this query.

/**
 * The history of one entity, e.g. ('milestone_payments', '<id>'). Security invoker: it
 * returns only what the caller may read of the audit log (auditors and system admins).
 */
create or replace function public.audit_history(entity_type text, entity_id text)
returns setof public.payment_audit_logs
language sql
stable
security invoker
set search_path = ''
as $$
  select l.* from public.payment_audit_logs as l
  where (l.timestamp, l.metadata ->> 'transaction') in (
    select e.timestamp, e.metadata ->> 'transaction' from public.payment_audit_logs as e
    where e.entity_type = audit_history.entity_type and e.entity_id = audit_history.entity_id
  )
  order by l.seq
$$;

grant execute on function audit_history(text, text) to auditor;

grant execute on function audit_history(text, text) to authenticated;
