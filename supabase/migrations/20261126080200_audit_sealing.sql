-- The audit trail, part 3: the hash chain, sealed asynchronously.
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
-- Run it often: `payguard audit seal --follow`, or pg_cron where it is available:
--   select cron.schedule('seal-audit-log', '1 seconds', 'select private.seal_audit_log()');

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

/** The chain's head: the last seal, else the last purge, else the start (zero hash). */
create function private.audit_chain_head(out through_seq bigint, out head_hash bytea)
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

/**
 * Seal what can be sealed: at most `max_rows` rows per call. Returns how many rows were
 * sealed. Concurrent calls do not collide: one seals, the others return 0. It must run in
 * a transaction of its own (autocommit), since its transaction id is part of the fence.
 */
create function private.seal_audit_log(max_rows integer default 100000) returns integer
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
  body bytea;
  bodies bytea [];
  skipped int8multirange;
  seqs bigint [];
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
  -- The rows' canonical bytes in one query; only the chaining itself is a loop, of one
  -- hash per row. Gaps and previous hashes are worked out set-based afterwards.
  select
    coalesce(array_agg(pending.seq order by pending.seq), '{}'::bigint []),
    coalesce(array_agg(pending.body order by pending.seq), '{}'::bytea [])
  into seqs, bodies
  from (
    select l.seq, convert_to(private.audit_row_canonical(l), 'UTF8') as body
    from public.payment_audit_logs as l
    where l.seq > head.through_seq and l.seq <= fence.through_seq
    order by l.seq
    limit max_rows
  ) as pending;
  prev := head.head_hash;
  foreach body in array bodies loop
    prev := sha256(prev || body);
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

  update public.payment_audit_logs as l
  set prev_hash = u.prev_hash, row_hash = u.row_hash
  from (
    select
      s.seq,
      s.row_hash,
      lag(s.row_hash, 1, head.head_hash) over (order by s.position) as prev_hash
    from unnest(seqs, hashes) with ordinality as s (seq, row_hash, position)
  ) as u
  where l.seq = u.seq;
  insert into private.audit_seals (through_seq, head_hash, sealed_rows, skipped_seqs)
  values (sealed_through, prev, cardinality(seqs), skipped);
  if sealed_through = fence.through_seq then
    update private.audit_seal_fence set through_seq = drawn, below_xid = own_xid,
      noted_at = clock_timestamp();
  end if;
  return cardinality(seqs);
end
$$;

/** BEFORE UPDATE OR DELETE on private.audit_seals and private.audit_purges. */
create function private.refuse_audit_record_change() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  raise exception '%.% is append-only', tg_table_schema, tg_table_name using errcode = '42501';
end
$$;

create trigger refuse_audit_record_change
before update or delete on private.audit_seals
for each row execute function private.refuse_audit_record_change();
create trigger refuse_audit_record_truncate
before truncate on private.audit_seals
for each statement execute function private.refuse_audit_record_change();

create trigger refuse_audit_record_change
before update or delete on private.audit_purges
for each row execute function private.refuse_audit_record_change();
create trigger refuse_audit_record_truncate
before truncate on private.audit_purges
for each statement execute function private.refuse_audit_record_change();

revoke all on function private.audit_chain_head() from public;
revoke all on function private.seal_audit_log(integer) from public;
revoke all on function private.refuse_audit_record_change() from public;
