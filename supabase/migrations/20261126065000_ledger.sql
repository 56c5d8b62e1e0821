-- The double-entry ledger behind every movement of money, after TigerBeetle's model.
--
-- Accounts keep debits and credits, pending and posted. A transfer moves an amount from a
-- debit account to a credit account, in one phase (posted at once) or two (pending, then
-- posted or voided, once). Entries record what each transfer did to each account's
-- balances, bucket by bucket. Transfers and entries are never changed or removed.
--
-- Wallets and escrow accounts must never have more debits than credits: their balances are
-- kept on their rows and checked under row locks, taken in account id order so that two
-- transfers never deadlock. Platform fees and processor clearing have no limit, and take
-- part in nearly every transfer: their rows are never locked or updated, and their balances
-- are the sums of their entries. So no transfer waits for another on a hot account.
--
-- Everything here lives in `private` and is granted to no API role: money moves only
-- through the security definer functions below, which the payment triggers call.

create type private.ledger_account_kind as enum (
  'user_wallet', 'escrow', 'platform_fees', 'processor_clearing'
);

create table private.ledger_accounts (
  id uuid primary key default gen_random_uuid(),
  kind private.ledger_account_kind not null,
  currency char(3) not null check (currency ~ '^[A-Z]{3}$'),
  user_id uuid references public.users (id),
  escrow_account_id uuid unique references public.escrow_accounts (id),
  -- Kept for accounts with a limit only; for the others, see private.ledger_balances.
  debits_must_not_exceed_credits boolean not null,
  debits_pending bigint not null default 0 check (debits_pending >= 0),
  debits_posted bigint not null default 0 check (debits_posted >= 0),
  credits_pending bigint not null default 0 check (credits_pending >= 0),
  credits_posted bigint not null default 0 check (credits_posted >= 0),
  created_at timestamptz not null default now(),
  constraint ledger_accounts_within_limit check (
    not debits_must_not_exceed_credits or debits_pending + debits_posted <= credits_posted
  ),
  check ((kind = 'user_wallet') = (user_id is not null)),
  check ((kind = 'escrow') = (escrow_account_id is not null)),
  check (debits_must_not_exceed_credits = (kind in ('user_wallet', 'escrow')))
);

comment on table private.ledger_accounts is
'Ledger accounts. Balances are kept on the row only for accounts with a limit (wallets, '
'escrow); the others are summed from private.ledger_entries.';

create index ledger_accounts_user_id_idx on private.ledger_accounts (user_id);
create unique index ledger_accounts_one_wallet_idx on private.ledger_accounts (user_id, currency)
where kind = 'user_wallet';
create unique index ledger_accounts_one_system_account_idx
on private.ledger_accounts (kind, currency)
where kind in ('platform_fees', 'processor_clearing');

create type private.ledger_transfer_kind as enum (
  'single_phase', 'pending', 'post_pending', 'void_pending'
);

create table private.ledger_transfers (
  id uuid primary key default gen_random_uuid(),
  kind private.ledger_transfer_kind not null,
  code text not null check (code ~ '^[a-z_]+$'),
  debit_account_id uuid not null references private.ledger_accounts (id),
  credit_account_id uuid not null references private.ledger_accounts (id),
  amount bigint not null check (amount > 0),
  currency char(3) not null check (currency ~ '^[A-Z]{3}$'),
  pending_id uuid references private.ledger_transfers (id),
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
  id bigint generated always as identity primary key,
  transfer_id uuid not null references private.ledger_transfers (id),
  account_id uuid not null references private.ledger_accounts (id),
  side text not null check (side in ('debit', 'credit')),
  bucket text not null check (bucket in ('pending', 'posted')),
  amount bigint not null check (amount <> 0),
  created_at timestamptz not null default now()
);

comment on table private.ledger_entries is
'What each transfer did to each account: a signed change of its debits or credits, pending '
'or posted. An account''s balances are the sums of its entries.';

create index ledger_entries_transfer_id_idx on private.ledger_entries (transfer_id);
create index ledger_entries_account_id_idx on private.ledger_entries (account_id);

/** BEFORE UPDATE, DELETE or TRUNCATE trigger: the ledger's history is never rewritten. */
create function private.refuse_ledger_rewrite() returns trigger
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
create function private.check_transfer_balances() returns trigger
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

/** The platform's account of `kind` (platform_fees, processor_clearing) in `currency`. */
create function private.ledger_system_account(
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
create function private.ledger_wallet(owner uuid, wallet_currency char(3)) returns uuid
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

/** AFTER INSERT trigger on escrow_accounts: each escrow account has its ledger account. */
create function private.open_escrow_ledger_account() returns trigger
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

create trigger open_escrow_ledger_account
after insert on public.escrow_accounts
for each row execute function private.open_escrow_ledger_account();

/** The ledger account of an escrow account. */
create function private.ledger_escrow_account(escrow uuid) returns uuid
language sql
stable
security definer
set search_path = ''
as $$
  select a.id from private.ledger_accounts as a where a.escrow_account_id = escrow
$$;

/**
 * Lock the limited accounts among those `changes` touch, in id order (so concurrent
 * transfers never deadlock), refuse an overdraft naming the account, and add the changes
 * to their rows, whose check constraint refuses an overdraft again. Accounts without a
 * limit are neither locked nor updated. Set-based, with no subtransaction.
 */
create function private.apply_to_limited_accounts(
  changes private.ledger_entries[]
) returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  overdrawn record;
begin
  -- not FOR UPDATE: that would wait on the key-share locks that inserting a transfer's rows
  -- takes on both accounts, and two transfers would deadlock
  perform 1 from private.ledger_accounts as a
  where a.id in (select c.account_id from unnest(changes) as c)
    and a.debits_must_not_exceed_credits
  order by a.id
  for no key update;

  select a.kind, a.id into overdrawn
  from private.ledger_accounts as a
  join (
    select
      c.account_id,
      coalesce(sum(c.amount) filter (where c.side = 'debit'), 0) as debits,
      coalesce(sum(c.amount) filter (where c.side = 'credit' and c.bucket = 'posted'), 0)
      as credits_posted
    from unnest(changes) as c
    group by c.account_id
  ) as change on a.id = change.account_id
  where a.debits_must_not_exceed_credits
    and a.debits_pending + a.debits_posted + change.debits
    > a.credits_posted + change.credits_posted
  order by a.id
  limit 1;
  if found then
    raise exception '% account % would be overdrawn', overdrawn.kind, overdrawn.id
    using errcode = 'PT409', hint = 'its available balance is smaller than the amount';
  end if;

  update private.ledger_accounts as a
  set
    debits_pending = a.debits_pending + change.debits_pending,
    debits_posted = a.debits_posted + change.debits_posted,
    credits_pending = a.credits_pending + change.credits_pending,
    credits_posted = a.credits_posted + change.credits_posted
  from (
    select
      c.account_id,
      coalesce(sum(c.amount) filter (where c.side = 'debit' and c.bucket = 'pending'), 0)
      as debits_pending,
      coalesce(sum(c.amount) filter (where c.side = 'debit' and c.bucket = 'posted'), 0)
      as debits_posted,
      coalesce(sum(c.amount) filter (where c.side = 'credit' and c.bucket = 'pending'), 0)
      as credits_pending,
      coalesce(sum(c.amount) filter (where c.side = 'credit' and c.bucket = 'posted'), 0)
      as credits_posted
    from unnest(changes) as c
    group by c.account_id
  ) as change
  where a.id = change.account_id and a.debits_must_not_exceed_credits;

  -- The cached balance users read: what an escrow holds, posted.
  update public.escrow_accounts as e
  set balance_minor = a.credits_posted - a.debits_posted
  from private.ledger_accounts as a
  where a.escrow_account_id = e.id
    and a.id in (select c.account_id from unnest(changes) as c)
    and e.balance_minor is distinct from a.credits_posted - a.debits_posted;
end
$$;

/**
 * Move `amount` of `currency` from `debit_account` to `credit_account`, posted at once or
 * pending. Returns the transfer's id.
 */
create function private.ledger_transfer(
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
    transfer_id, case when pending then 'pending' else 'single_phase' end::private.ledger_transfer_kind,
    transfer_code, debit_account, credit_account, amount, transfer_currency,
    reference_type, reference_id
  );
  perform private.record_entries(array[
    row(null, transfer_id, debit_account, 'debit', bucket, amount, null),
    row(null, transfer_id, credit_account, 'credit', bucket, amount, null)
  ]::private.ledger_entries[]);
  return transfer_id;
end
$$;

/** Insert the entries and apply them to the limited accounts' rows. */
create function private.record_entries(changes private.ledger_entries[]) returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.apply_to_limited_accounts(changes);
  insert into private.ledger_entries (transfer_id, account_id, side, bucket, amount)
  select c.transfer_id, c.account_id, c.side, c.bucket, c.amount from unnest(changes) as c;
end
$$;

/**
 * Post (`post` true) or void a pending transfer, once: a second attempt, concurrent or not,
 * is refused. Returns the resolving transfer's id.
 */
create function private.ledger_resolve(pending_transfer uuid, post boolean) returns uuid
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
      row(null, transfer_id, pending_row.debit_account_id, 'debit', 'pending', -pending_row.amount, null),
      row(null, transfer_id, pending_row.debit_account_id, 'debit', 'posted', pending_row.amount, null),
      row(null, transfer_id, pending_row.credit_account_id, 'credit', 'pending', -pending_row.amount, null),
      row(null, transfer_id, pending_row.credit_account_id, 'credit', 'posted', pending_row.amount, null)
    ]::private.ledger_entries[]
    else array[
      row(null, transfer_id, pending_row.debit_account_id, 'debit', 'pending', -pending_row.amount, null),
      row(null, transfer_id, pending_row.credit_account_id, 'credit', 'pending', -pending_row.amount, null)
    ]::private.ledger_entries[]
    end
  );
  return transfer_id;
end
$$;

revoke all on function private.refuse_ledger_rewrite() from public;
revoke all on function private.check_transfer_balances() from public;
revoke all on function private.ledger_system_account(private.ledger_account_kind, char) from public;
revoke all on function private.ledger_wallet(uuid, char) from public;
revoke all on function private.open_escrow_ledger_account() from public;
revoke all on function private.ledger_escrow_account(uuid) from public;
revoke all on function private.apply_to_limited_accounts(private.ledger_entries[]) from public;
revoke all on function private.ledger_transfer(
  text, uuid, uuid, bigint, char, boolean, text, uuid
) from public;
revoke all on function private.record_entries(private.ledger_entries[]) from public;
revoke all on function private.ledger_resolve(uuid, boolean) from public;
