-- Ledger
--
-- The double-entry ledger behind every movement of money, after TigerBeetle's model.
--
-- Accounts keep debits and credits, pending and posted. A transfer moves an amount from a
-- debit account to a credit account, in one phase (posted at once) or two (pending, then
-- posted or voided, once). Entries record what each transfer did to each account's
-- balances, bucket by bucket. Transfers and entries are never changed or removed.
--
-- Wallets and escrow accounts must never have more debits than credits. Each of their
-- entries is numbered and carries the account's totals after it, so an account's balances
-- are where its latest entry left them; a transfer locks these accounts' rows, in account id
-- order so that two transfers never deadlock, and checks the limit before it records
-- anything. Platform fees and processor clearing have no limit and take part in nearly every
-- transfer: their rows are never locked for update, and their balances are the sums of their
-- entries. So no transfer waits for another on a hot account.
--
-- Everything here lives in `private` and is granted to no API role: money moves only
-- through the security definer functions below, which the payment triggers call.
--
-- This file is the current definition of everything in its domain. Change it first, then
-- write the migration that makes the same change (docs/schema-changes.md); `payguard schema
-- check` proves that the migrations and these files build the same database.
-- See also: tests/sql/ledger/, tests/py/test_ledger_concurrency.py, tests/py/test_money_model.py

set local check_function_bodies = off;

-- Section: accounts

create type private.ledger_account_kind as enum (
  'user_wallet', 'escrow', 'platform_fees', 'processor_clearing'
);

create table private.ledger_accounts (
  id uuid not null default gen_random_uuid(),
  kind private.ledger_account_kind not null,
  currency char(3) not null,
  -- The owner of a wallet; null for the other kinds.
  user_id uuid,
  -- The escrow account an escrow ledger account belongs to; null for the other kinds.
  escrow_account_id uuid,
  -- True exactly for wallets and escrow: the accounts whose entries carry running totals and
  -- whose rows a transfer locks (see private.record_entries).
  debits_must_not_exceed_credits boolean not null,
  created_at timestamptz not null default now(),
  constraint ledger_accounts_pkey primary key (id),
  constraint ledger_accounts_escrow_account_id_key unique (escrow_account_id),
  constraint ledger_accounts_escrow_account_id_fkey foreign key (escrow_account_id)
  references public.escrow_accounts (id),
  constraint ledger_accounts_user_id_fkey foreign key (user_id) references public.users (id),
  constraint ledger_accounts_check check ((kind = 'user_wallet') = (user_id is not null)),
  constraint ledger_accounts_check1 check ((kind = 'escrow') = (escrow_account_id is not null)),
  constraint ledger_accounts_check2 check (
    debits_must_not_exceed_credits = (kind in ('user_wallet', 'escrow'))
  ),
  constraint ledger_accounts_currency_check check (currency ~ '^[A-Z]{3}$')
);

comment on table private.ledger_accounts is
'Ledger accounts. They hold no balances: see private.ledger_limited_balances (accounts with '
'a limit, from their latest entries) and private.ledger_balances (every account, summed).';

create index ledger_accounts_user_id_idx on private.ledger_accounts (user_id);

-- One wallet per user and currency, one account of each system kind per currency: the
-- lookups below open them on first use, and concurrent first uses meet here.
create unique index ledger_accounts_one_wallet_idx on private.ledger_accounts (user_id, currency)
where kind = 'user_wallet';

create unique index ledger_accounts_one_system_account_idx
on private.ledger_accounts (kind, currency)
where kind in ('platform_fees', 'processor_clearing');

/** The platform's account of `kind` (platform_fees, processor_clearing) in `currency`. */
create or replace function private.ledger_system_account(
  account_kind private.ledger_account_kind, account_currency char(3)
) returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  found uuid;
begin
  if account_kind not in ('platform_fees', 'processor_clearing') then
    raise exception 'not a system account kind: %', account_kind using errcode = 'PT422';
  end if;
  select a.id into found from private.ledger_accounts as a
  where a.kind = account_kind and a.currency = account_currency;
  if found is null then
    insert into private.ledger_accounts (kind, currency, debits_must_not_exceed_credits)
    values (account_kind, account_currency, false)
    on conflict do nothing;
    select a.id into found from private.ledger_accounts as a
    where a.kind = account_kind and a.currency = account_currency;
  end if;
  return found;
end
$$;

/** The wallet of `owner` in `wallet_currency`, opened on first use. */
create or replace function private.ledger_wallet(owner uuid, wallet_currency char(3)) returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  found uuid;
begin
  select a.id into found from private.ledger_accounts as a
  where a.kind = 'user_wallet' and a.user_id = owner and a.currency = wallet_currency;
  if found is null then
    insert into private.ledger_accounts (kind, currency, user_id, debits_must_not_exceed_credits)
    values ('user_wallet', wallet_currency, owner, true)
    on conflict do nothing;
    select a.id into found from private.ledger_accounts as a
    where a.kind = 'user_wallet' and a.user_id = owner and a.currency = wallet_currency;
  end if;
  return found;
end
$$;

/** The ledger account of an escrow account. */
create or replace function private.ledger_escrow_account(escrow uuid) returns uuid
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  return (
    select a.id from private.ledger_accounts as a where a.escrow_account_id = escrow
  );
end
$$;

/** AFTER INSERT trigger on escrow_accounts: each escrow account has its ledger account. */
create or replace function private.open_escrow_ledger_account() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into private.ledger_accounts (
    kind, currency, escrow_account_id, debits_must_not_exceed_credits
  )
  values ('escrow', new.currency, new.id, true);
  return new;
end
$$;

-- Opens the escrow's ledger account with it, so that every escrow can receive money at once.
create trigger open_escrow_ledger_account
after insert on public.escrow_accounts
for each row execute function private.open_escrow_ledger_account();

-- Section: transfers and entries

create type private.ledger_transfer_kind as enum (
  'single_phase', 'pending', 'post_pending', 'void_pending'
);

create table private.ledger_transfers (
  id uuid primary key default gen_random_uuid(),
  kind private.ledger_transfer_kind not null,
  -- What the transfer is for: milestone_funding, platform_fee, withdrawal, ...
  code text not null check (code ~ '^[a-z_]+$'),
  debit_account_id uuid not null references private.ledger_accounts (id),
  credit_account_id uuid not null references private.ledger_accounts (id),
  amount bigint not null check (amount > 0),
  currency char(3) not null check (currency ~ '^[A-Z]{3}$'),
  -- For post_pending and void_pending: the pending transfer resolved.
  pending_id uuid references private.ledger_transfers (id),
  -- What the transfer is about, e.g. ('milestone_payment', the payment's id).
  reference_type text,
  reference_id uuid,
  created_at timestamptz not null default now(),
  check (debit_account_id <> credit_account_id),
  check ((kind in ('post_pending', 'void_pending')) = (pending_id is not null))
);

comment on table private.ledger_transfers is
'Immutable transfers. A pending transfer is resolved at most once, by a post_pending or a '
'void_pending transfer naming it (unique index on pending_id).';

create index ledger_transfers_debit_account_id_idx
on private.ledger_transfers (debit_account_id);

create index ledger_transfers_credit_account_id_idx
on private.ledger_transfers (credit_account_id);

create unique index ledger_transfers_resolved_once_idx on private.ledger_transfers (pending_id);

create index ledger_transfers_reference_idx
on private.ledger_transfers (reference_type, reference_id);

create table private.ledger_entries (
  id bigint generated always as identity not null,
  transfer_id uuid not null,
  account_id uuid not null,
  side text not null,
  bucket text not null,
  -- Signed: resolving a pending transfer takes its amount back out of the pending bucket.
  amount bigint not null,
  created_at timestamptz not null default now(),
  -- The running totals of an account with a limit (see the column comments); null for the
  -- others, whose entries are not numbered.
  account_version bigint,
  account_debits_pending bigint,
  account_debits_posted bigint,
  account_credits_pending bigint,
  account_credits_posted bigint,
  constraint ledger_entries_pkey primary key (id),
  constraint ledger_entries_account_id_fkey foreign key (account_id)
  references private.ledger_accounts (id),
  constraint ledger_entries_transfer_id_fkey foreign key (transfer_id)
  references private.ledger_transfers (id),
  constraint ledger_entries_account_totals_together check (
    (account_version is null) = (account_debits_pending is null)
    and (account_version is null) = (account_debits_posted is null)
    and (account_version is null) = (account_credits_pending is null)
    and (account_version is null) = (account_credits_posted is null)
  ),
  constraint ledger_entries_account_totals_valid check (
    account_version >= 1
    and account_debits_pending >= 0 and account_debits_posted >= 0
    and account_credits_pending >= 0 and account_credits_posted >= 0
  ),
  constraint ledger_entries_amount_check check (amount <> 0),
  constraint ledger_entries_bucket_check check (bucket in ('pending', 'posted')),
  constraint ledger_entries_side_check check (side in ('debit', 'credit'))
);

-- The limit, entry by entry: no entry leaves its account with more debits than posted
-- credits. Not valid: the earliest entries got their totals after the fact, and their limit
-- was checked per call, on the call's sum, in an order within the call that is not
-- recorded; every new entry is checked.
alter table private.ledger_entries
add constraint ledger_entries_account_within_limit check (
  account_debits_pending + account_debits_posted <= account_credits_posted
) not valid;

comment on table private.ledger_entries is
'What each transfer did to each account: a signed change of its debits or credits, pending '
'or posted. An account''s balances are the sums of its entries.';

comment on column private.ledger_entries.account_version is
'For an account with a limit: this entry''s number among the account''s entries (1, 2, ...). '
'Null for the others.';

comment on column private.ledger_entries.account_debits_pending is
'For an account with a limit: its pending debits after this entry. Null for the others.';

comment on column private.ledger_entries.account_debits_posted is
'For an account with a limit: its posted debits after this entry. Null for the others.';

comment on column private.ledger_entries.account_credits_pending is
'For an account with a limit: its pending credits after this entry. Null for the others.';

comment on column private.ledger_entries.account_credits_posted is
'For an account with a limit: its posted credits after this entry. Null for the others.';

create index ledger_entries_transfer_id_idx on private.ledger_entries (transfer_id);

-- One history per account, numbered without gaps or duplicates; it also finds an account's
-- entries, and its latest one.
create unique index ledger_entries_account_version_idx
on private.ledger_entries (account_id, account_version);

/** BEFORE UPDATE, DELETE or TRUNCATE trigger: the ledger's history is never rewritten. */
create or replace function private.refuse_ledger_rewrite() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  raise exception '% are immutable: post a correcting transfer instead', tg_table_name
  using errcode = 'PT409';
end
$$;

create trigger refuse_ledger_rewrite
before update or delete on private.ledger_transfers
for each row execute function private.refuse_ledger_rewrite();

create trigger refuse_ledger_truncate
before truncate on private.ledger_transfers
for each statement execute function private.refuse_ledger_rewrite();

create trigger refuse_ledger_rewrite
before update or delete on private.ledger_entries
for each row execute function private.refuse_ledger_rewrite();

create trigger refuse_ledger_truncate
before truncate on private.ledger_entries
for each statement execute function private.refuse_ledger_rewrite();

/**
 * Constraint trigger, checked at commit for each transfer that got entries: in each bucket,
 * the debits it recorded equal the credits. Security definer: it fires at commit as
 * whichever role is current then, which may read no ledger table.
 */
create or replace function private.check_transfer_balances() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  unbalanced text;
begin
  select e.bucket into unbalanced
  from private.ledger_entries as e
  where e.transfer_id = new.transfer_id
  group by e.bucket
  having sum(e.amount) filter (where e.side = 'debit')
    is distinct from sum(e.amount) filter (where e.side = 'credit')
  limit 1;
  if unbalanced is not null then
    raise exception 'ledger transfer % does not balance (% debits differ from credits)',
    new.transfer_id, unbalanced
    using errcode = 'PT500';
  end if;
  return null;
end
$$;

create constraint trigger check_transfer_balances
after insert on private.ledger_entries
deferrable initially deferred
for each row execute function private.check_transfer_balances();

-- Section: balances

/** Every account's balances, summed from its entries (hot accounts' only source). */
create view private.ledger_balances as
select
  a.id as account_id,
  a.kind,
  a.currency,
  coalesce(sum(e.amount) filter (where e.side = 'debit' and e.bucket = 'pending'), 0)::bigint
    as debits_pending,
  coalesce(sum(e.amount) filter (where e.side = 'debit' and e.bucket = 'posted'), 0)::bigint
    as debits_posted,
  coalesce(sum(e.amount) filter (where e.side = 'credit' and e.bucket = 'pending'), 0)::bigint
    as credits_pending,
  coalesce(sum(e.amount) filter (where e.side = 'credit' and e.bucket = 'posted'), 0)::bigint
    as credits_posted
from private.ledger_accounts as a
left join private.ledger_entries as e on a.id = e.account_id
group by a.id, a.kind, a.currency;

/**
 * The balances of the accounts with a limit (wallets, escrow), where their latest entries
 * left them; zero for an account without entries. `account_version` is the latest entry's
 * number.
 */
create view private.ledger_limited_balances as
select
  a.id as account_id,
  a.kind,
  a.currency,
  a.user_id,
  a.escrow_account_id,
  coalesce(latest.account_version, 0) as account_version,
  coalesce(latest.account_debits_pending, 0) as debits_pending,
  coalesce(latest.account_debits_posted, 0) as debits_posted,
  coalesce(latest.account_credits_pending, 0) as credits_pending,
  coalesce(latest.account_credits_posted, 0) as credits_posted
from private.ledger_accounts as a
left join lateral (
  select
    e.account_version,
    e.account_debits_pending,
    e.account_debits_posted,
    e.account_credits_pending,
    e.account_credits_posted
  from private.ledger_entries as e
  where e.account_id = a.id and e.account_version is not null
  order by e.account_version desc
  limit 1
) as latest on true
where a.debits_must_not_exceed_credits;

-- Section: moving money

create type private.ledger_change as (
  transfer_id uuid,
  account_id uuid,
  side text,
  bucket text,
  amount bigint
);

comment on type private.ledger_change is
'What a transfer does to one account''s balances: a signed amount of its debits or credits, '
'pending or posted (an entry before it is recorded).';

/**
 * Move `amount` of `currency` from `debit_account` to `credit_account`, posted at once or
 * pending. Returns the transfer's id; its entries are recorded by private.record_entries().
 */
create or replace function private.ledger_transfer(
  transfer_code text,
  debit_account uuid,
  credit_account uuid,
  amount bigint,
  transfer_currency char(3),
  pending boolean default false,
  reference_type text default null,
  reference_id uuid default null
) returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  transfer_id uuid := gen_random_uuid();
  bucket text := case when pending then 'pending' else 'posted' end;
  mismatched int;
begin
  if amount is null or amount <= 0 then
    raise exception 'a transfer moves a positive amount, not %', amount using errcode = 'PT422';
  end if;
  select count(*) into mismatched from private.ledger_accounts as a
  where a.id in (debit_account, credit_account) and a.currency = transfer_currency;
  if mismatched <> 2 then
    raise exception 'accounts % and % must both exist and hold %',
    debit_account, credit_account, transfer_currency
    using errcode = 'PT422';
  end if;
  insert into private.ledger_transfers (
    id, kind, code, debit_account_id, credit_account_id, amount, currency,
    reference_type, reference_id
  )
  values (
    transfer_id,
    case when pending then 'pending' else 'single_phase' end::private.ledger_transfer_kind,
    transfer_code, debit_account, credit_account, amount, transfer_currency,
    reference_type, reference_id
  );
  perform private.record_entries(array[
    row(transfer_id, debit_account, 'debit', bucket, amount),
    row(transfer_id, credit_account, 'credit', bucket, amount)
  ]::private.ledger_change[]);
  return transfer_id;
end
$$;

/**
 * Post (`post` true) or void a pending transfer, once: a second attempt, concurrent or not,
 * is refused. Returns the resolving transfer's id.
 */
create or replace function private.ledger_resolve(pending_transfer uuid, post boolean)
returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  pending_row private.ledger_transfers;
  transfer_id uuid := gen_random_uuid();
begin
  select * into pending_row from private.ledger_transfers as t where t.id = pending_transfer;
  if not found or pending_row.kind <> 'pending' then
    raise exception 'no pending transfer %', pending_transfer using errcode = 'PT404';
  end if;
  begin
    insert into private.ledger_transfers (
      id, kind, code, debit_account_id, credit_account_id, amount, currency, pending_id,
      reference_type, reference_id
    )
    values (
      transfer_id,
      case when post then 'post_pending' else 'void_pending' end::private.ledger_transfer_kind,
      pending_row.code, pending_row.debit_account_id, pending_row.credit_account_id,
      pending_row.amount, pending_row.currency, pending_row.id,
      pending_row.reference_type, pending_row.reference_id
    );
  exception when unique_violation then
    raise exception 'pending transfer % is already resolved', pending_transfer
    using errcode = 'PT409';
  end;
  perform private.record_entries(
    case when post then array[
      row(transfer_id, pending_row.debit_account_id, 'debit', 'pending', -pending_row.amount),
      row(transfer_id, pending_row.debit_account_id, 'debit', 'posted', pending_row.amount),
      row(transfer_id, pending_row.credit_account_id, 'credit', 'pending', -pending_row.amount),
      row(transfer_id, pending_row.credit_account_id, 'credit', 'posted', pending_row.amount)
    ]::private.ledger_change []
    else array[
      row(transfer_id, pending_row.debit_account_id, 'debit', 'pending', -pending_row.amount),
      row(transfer_id, pending_row.credit_account_id, 'credit', 'pending', -pending_row.amount)
    ]::private.ledger_change []
    end
  );
  return transfer_id;
end
$$;

-- Linked transfers: the transfers of one event posted together.
--
-- A release moves the payee's share and the platform fee out of the same escrow; a split
-- also returns the rest. Posted one by one, each transfer would lock, check and update the
-- escrow's ledger account and its cached balance again: two or three times the work, and as
-- many audit rows for the same balance. private.ledger_transfers() posts a list of
-- single-phase transfers at once: every row inserted in one statement, the limited accounts
-- locked, checked and updated once for the sum of their entries. Each transfer is still
-- its own balanced, immutable row; only the bookkeeping around them is shared.

/** One single-phase transfer, not yet posted: an element for private.ledger_transfers(). */
create or replace function private.ledger_move(
  transfer_code text,
  debit_account uuid,
  credit_account uuid,
  amount bigint,
  transfer_currency char(3),
  reference_type text default null,
  reference_id uuid default null
) returns private.ledger_transfers
language plpgsql
set search_path = ''
as $$
declare
  move private.ledger_transfers;
begin
  move.id := gen_random_uuid();
  move.kind := 'single_phase';
  move.code := transfer_code;
  move.debit_account_id := debit_account;
  move.credit_account_id := credit_account;
  move.amount := amount;
  move.currency := transfer_currency;
  move.reference_type := reference_type;
  move.reference_id := reference_id;
  return move;
end
$$;

/**
 * Post `moves` (from private.ledger_move) together: all or none. Each must move a positive
 * amount between two accounts of its currency.
 */
create or replace function private.ledger_transfers(moves private.ledger_transfers[]) returns void
language plpgsql
security definer
set search_path = ''
set plan_cache_mode = force_generic_plan
as $$
declare
  bad private.ledger_transfers;
begin
  select m.* into bad from unnest(moves) as m
  where m.amount is null or m.amount <= 0
  limit 1;
  if found then
    raise exception 'a transfer moves a positive amount, not %', bad.amount using errcode = 'PT422';
  end if;
  select m.* into bad from unnest(moves) as m
  where (
    select count(*) from private.ledger_accounts as a
    where a.id in (m.debit_account_id, m.credit_account_id) and a.currency = m.currency
  ) <> 2
  limit 1;
  if found then
    raise exception 'accounts % and % must both exist and hold %',
    bad.debit_account_id, bad.credit_account_id, bad.currency
    using errcode = 'PT422';
  end if;
  insert into private.ledger_transfers (
    id, kind, code, debit_account_id, credit_account_id, amount, currency,
    reference_type, reference_id
  )
  select
    m.id, 'single_phase', m.code, m.debit_account_id, m.credit_account_id, m.amount,
    m.currency, m.reference_type, m.reference_id
  from unnest(moves) as m;
  perform private.record_entries(array(
    select row(m.id, side.account_id, side.side, 'posted', m.amount)::private.ledger_change
    from unnest(moves) as m
    cross join lateral (
      values (m.debit_account_id, 'debit'), (m.credit_account_id, 'credit')
    ) as side (account_id, side)
  ));
end
$$;

/**
 * Record `changes` as entries, all or none, at read committed isolation only: the balances
 * the lock protects are read by a statement after the lock, whose snapshot must see the
 * entries of every transfer that held the lock before. The limited accounts among them are
 * locked in id order (so concurrent transfers never deadlock); their entries are numbered on
 * from each account's latest and carry its totals on, what raises the room under the limit
 * first (credits, resolving debits), so that an account's last entry is its lowest point,
 * and are recorded in that order; an overdraft is refused naming the account (and the
 * entries' check constraint would refuse it again). Accounts without a limit are neither
 * locked nor numbered. The escrow accounts' cached balances follow. Set-based, with no
 * subtransaction.
 */
create or replace function private.record_entries(changes private.ledger_change[]) returns void
language plpgsql
security definer
set search_path = ''
set plan_cache_mode = force_generic_plan
as $$
declare
  limited uuid [];
  placed private.ledger_entries [];
  overdrawn uuid;
begin
  -- (read uncommitted is read committed in PostgreSQL)
  if current_setting('transaction_isolation') not in ('read committed', 'read uncommitted') then
    raise exception 'money moves only at read committed isolation, not %',
    current_setting('transaction_isolation')
    using errcode = '0A000',
    hint = 'a transfer reads the balances its lock protects with a snapshot taken after the '
    'lock; run it at read committed, as PostgREST does';
  end if;
  -- Not FOR UPDATE: that would wait on the key-share locks that inserting a transfer's rows
  -- takes on both accounts, so that two transfers would deadlock. The accounts as an array,
  -- so that every statement below finds them by primary key.
  limited := array(
    select a.id from private.ledger_accounts as a
    where a.id = any(array(select c.account_id from unnest(changes) as c))
      and a.debits_must_not_exceed_credits
    order by a.id
    for no key update
  );
  -- A statement after the lock: its snapshot holds every entry of the transfers that held
  -- the lock before. Each account's latest entry is looked up as in
  -- private.ledger_limited_balances, for the call's accounts only (joining the view instead
  -- made a release slower).
  placed := array(
    select row(
      null, c.transfer_id, c.account_id, c.side, c.bucket, c.amount, null,
      latest.account_version + row_number() over running,
      latest.account_debits_pending + coalesce(
        sum(c.amount) filter (where c.side = 'debit' and c.bucket = 'pending') over running, 0
      ),
      latest.account_debits_posted + coalesce(
        sum(c.amount) filter (where c.side = 'debit' and c.bucket = 'posted') over running, 0
      ),
      latest.account_credits_pending + coalesce(
        sum(c.amount) filter (where c.side = 'credit' and c.bucket = 'pending') over running, 0
      ),
      latest.account_credits_posted + coalesce(
        sum(c.amount) filter (where c.side = 'credit' and c.bucket = 'posted') over running, 0
      )
    )::private.ledger_entries
    from unnest(changes) with ordinality as c (
      transfer_id, account_id, side, bucket, amount, position
    )
    left join lateral (
      select
        coalesce(max(e.account_version), 0) as account_version,
        coalesce(max(e.account_debits_pending), 0) as account_debits_pending,
        coalesce(max(e.account_debits_posted), 0) as account_debits_posted,
        coalesce(max(e.account_credits_pending), 0) as account_credits_pending,
        coalesce(max(e.account_credits_posted), 0) as account_credits_posted
      from (
        select
          l.account_version, l.account_debits_pending, l.account_debits_posted,
          l.account_credits_pending, l.account_credits_posted
        from private.ledger_entries as l
        where c.account_id = any(limited)
          and l.account_id = c.account_id and l.account_version is not null
        order by l.account_version desc
        limit 1
      ) as e
      -- no row (so null totals) for an account without a limit; zeros for one without entries
      having c.account_id = any(limited)
    ) as latest on true
    -- What raises (or keeps) the room under the limit first: positive credits, negative
    -- (resolving) debits; then what lowers it.
    window running as (
      partition by c.account_id
      order by (c.side = 'credit') = (c.amount > 0) desc, c.position
    )
    -- recorded in the same order, so that each account's entries have ids in version order
    order by (c.side = 'credit') = (c.amount > 0) desc, c.position
  );

  select p.account_id into overdrawn
  from unnest(placed) as p
  where p.account_debits_pending + p.account_debits_posted > p.account_credits_posted
  order by p.account_id
  limit 1;
  if found then
    raise exception '% account % would be overdrawn',
    (select a.kind from private.ledger_accounts as a where a.id = overdrawn), overdrawn
    using errcode = 'PT409', hint = 'its available balance is smaller than the amount';
  end if;

  insert into private.ledger_entries (
    transfer_id, account_id, side, bucket, amount, account_version, account_debits_pending,
    account_debits_posted, account_credits_pending, account_credits_posted
  )
  select
    p.transfer_id, p.account_id, p.side, p.bucket, p.amount, p.account_version,
    p.account_debits_pending, p.account_debits_posted, p.account_credits_pending,
    p.account_credits_posted
  from unnest(placed) as p;

  -- The cached balance users read: what an escrow holds, posted.
  update public.escrow_accounts as e
  set balance_minor = last.posted
  from (
    select distinct on (p.account_id)
      p.account_id,
      p.account_credits_posted - p.account_debits_posted as posted
    from unnest(placed) as p
    where p.account_version is not null
    order by p.account_id asc, p.account_version desc
  ) as last
  inner join private.ledger_accounts as a on last.account_id = a.id
  where a.id = any(limited)
    and a.escrow_account_id = e.id
    and e.balance_minor is distinct from last.posted;
end
$$;
