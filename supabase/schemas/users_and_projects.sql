-- Users and projects
--
-- Each Supabase user's profile and application role, the projects homeowners hire contractors
-- for, and their milestones; and the erasure of a user's personal data, or the user's delete.
--
-- This file is the current definition of everything in its domain. Change it first, then
-- write the migration that makes the same change (docs/schema-changes.md); `payguard schema
-- check` proves that the migrations and these files build the same database.
-- See also: policies/users.toml, policies/projects.toml, policies/project_milestones.toml,
-- docs/erasure.md

set local check_function_bodies = off;

-- Section: users
--
-- The public profile of each Supabase user, and the user's application role.
--
-- The role decides what staff may see (auditors read the audit log, admins manage roles), so
-- no user may set or change their own: a new profile is a homeowner or a contractor, as the
-- user signed up, and only an admin changes it afterwards.
create type public.app_role as enum (
  'homeowner', 'contractor', 'support', 'admin', 'auditor', 'system_admin'
);

create table public.users (
  -- The Supabase user's id: a profile lives and dies with its user.
  id uuid not null,
  email text,
  full_name text,
  phone text,
  role public.app_role not null default 'homeowner',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  -- When the user's personal data was erased ("Section: erasure" below); null for a user not
  -- erased.
  erased_at timestamptz,
  constraint users_pkey primary key (id),
  constraint users_id_fkey foreign key (id) references auth.users (id) on delete cascade,
  constraint users_full_name_check check (char_length(full_name) <= 200),
  -- See "A user's phone number" below.
  constraint users_phone_e164 check (phone ~ '^\+[1-9][0-9]{6,14}$')
);

comment on table public.users is
'A Supabase user''s profile. `role` is the application role: only an admin may change it.';

comment on column public.users.phone is
'An E.164 phone number: + and 7 to 15 digits, no spaces. The card-data guard reads it.';

comment on column public.users.erased_at is
'When the user''s personal data was erased (private.erase_user): email, name and phone are '
'gone, the account is banned, and private.has_app_role no longer holds for the user.';

create index users_role_idx on public.users (role);

create trigger keep_row_timestamps
before insert or update on public.users
for each row execute function private.keep_row_timestamps();

-- A staff member's write needs MFA, and a recent step-up (helpers.sql).
create trigger staff_writes_need_mfa
before insert or update or delete on public.users
for each row execute function private.staff_writes_need_mfa('step_up');

-- Every text column is read, the phone number included (see "A user's phone number" below).
create trigger refuse_card_data
before insert or update
on public.users
for each row
execute function private.refuse_card_data(
  'id', 'role', 'created_at', 'updated_at', 'erased_at'
);

/**
 * AFTER INSERT trigger on auth.users: creates the profile. The role requested at sign-up is
 * honoured only for homeowner and contractor; anything else makes a homeowner.
 */
create or replace function private.create_user_profile() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into public.users (id, email, full_name, role)
  values (
    new.id,
    new.email,
    new.raw_user_meta_data ->> 'full_name',
    case
      when new.raw_user_meta_data ->> 'role' = 'contractor' then 'contractor'
      else 'homeowner'
    end::public.app_role
  )
  on conflict (id) do nothing;
  return new;
end
$$;

create trigger create_user_profile
after insert on auth.users
for each row execute function private.create_user_profile();

/**
 * True when the requesting user's application role is one of `roles`, and the user is not
 * erased. Security definer, so that a policy can ask without granting the caller a read of
 * other profiles.
 */
create or replace function private.has_app_role(roles public.app_role[]) returns boolean
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  return (
    select exists (
      select from public.users as u
      where u.id = (select auth.uid()) and u.role = any(roles) and u.erased_at is null
    )
  );
end
$$;

grant execute on function private.has_app_role(app_role[]) to admin;
grant execute on function private.has_app_role(app_role[]) to auditor;
grant execute on function private.has_app_role(app_role[]) to authenticated;
grant execute on function private.has_app_role(app_role[]) to escrow_service;
grant execute on function private.has_app_role(app_role[]) to payment_service;

-- A user's phone number has a format: E.164, a + and at most 15 digits (ITU-T E.164 caps an
-- international number at 15 digits), with no spaces or punctuation.
--
-- A phone number written with its spaces can look like a card number, yet exempting the
-- column from the card-data guard would let a 16-digit number that passes Luhn be stored in
-- it. So the format keeps out everything but a phone number (a card number of 16 to 19
-- digits cannot be one), and the guard reads the column like any other: a 13- to 15-digit
-- number that passes Luhn is refused as a card number even here, since nothing tells the two
-- apart.

/**
 * A phone number in E.164 form, or null when `candidate` cannot be read as one: spaces,
 * dots, dashes, slashes and parentheses removed, a leading 00 read as +.
 */
create or replace function private.e164_phone(candidate text) returns text
language sql
immutable
strict
parallel safe
set search_path = ''
as $$
  select case
    when normalized ~ '^\+[1-9][0-9]{6,14}$' then normalized
  end
  from (
    select regexp_replace(
      regexp_replace(btrim(candidate), '[[:space:]()./-]', '', 'g'), '^00', '+'
    ) as normalized
  ) as n
$$;

/**
 * BEFORE INSERT OR UPDATE OF phone on public.users: a phone number that is not E.164 is
 * refused with a message that says so (and that, unlike the check constraint's, does not
 * echo the row). It runs before the card-data guard, so that a value too long to be a phone
 * number is refused for its format.
 */
create or replace function private.check_user_phone() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.phone is not null and new.phone !~ '^\+[1-9][0-9]{6,14}$' then
    raise exception 'users.phone must be an E.164 number: + and 7 to 15 digits, without spaces'
    using errcode = 'PT422',
    hint = 'Write it with its country code, for example +14155550123.';
  end if;
  return new;
end
$$;

create trigger check_user_phone
before insert or update of phone on public.users
for each row execute function private.check_user_phone();

-- Section: the access token hook
--
-- Supabase's auth server calls public.custom_access_token_hook, as supabase_auth_admin, each
-- time it issues an access token (supabase/config.toml, [auth.hook.custom_access_token]). It
-- is what puts a staff member's database role in the token: PostgREST takes the token's `role`
-- for the request, and the policies written for `admin` and `auditor` then apply.

/**
 * The claims of an access token as the auth server is about to issue it, with the user's
 * application role. The event is Supabase's: {user_id, claims, authentication_method}; the
 * answer is {claims}, or {error: {http_code, message}}.
 *   * `role`: `admin` for a user whose public.users.role is admin or system_admin, `auditor` for
 *     an auditor, `authenticated` for everyone else (support included: no database role of its
 *     own), and for staff the auth server has banned (auth.users.banned_until in the future) or
 *     whose profile is gone.
 *   * `user_role`: public.users.role, for clients to shape their screens (never for access:
 *     the database reads public.users itself); absent without a profile.
 *   * every other claim is kept as given (iss, aud, exp, iat, sub, aal, amr, session_id, ...).
 * Security definer: the auth server's role reads no application table.
 */
create or replace function public.custom_access_token_hook(event jsonb) returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  claims jsonb := event -> 'claims';
  subject uuid;
  profile_role public.app_role;
  banned boolean;
begin
  if jsonb_typeof(claims) is distinct from 'object'
    or coalesce(event ->> 'user_id', '')
    !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
    return jsonb_build_object('error', jsonb_build_object(
      'http_code', 400,
      'message', 'the access token hook is called with a user_id and the claims to issue'
    ));
  end if;
  subject := (event ->> 'user_id')::uuid;
  select u.role into profile_role from public.users as u where u.id = subject;
  select coalesce(a.banned_until > now(), false) into banned
  from auth.users as a where a.id = subject;
  claims := claims - 'user_role';
  if profile_role is not null then
    claims := claims || jsonb_build_object('user_role', profile_role);
  end if;
  return jsonb_build_object('claims', claims || jsonb_build_object('role', case
    when coalesce(banned, false) then 'authenticated'
    when profile_role in ('admin', 'system_admin') then 'admin'
    when profile_role = 'auditor' then 'auditor'
    else 'authenticated'
  end));
end
$$;

-- Supabase's contract: the auth server's role runs it, and no API role does.
grant usage on schema public to supabase_auth_admin;

grant execute on function public.custom_access_token_hook(jsonb) to supabase_auth_admin;

revoke execute on function public.custom_access_token_hook(jsonb) from service_role;

-- Section: projects and milestones
--
-- What a homeowner pays a contractor for.

create type public.project_status as enum ('draft', 'open', 'in_progress', 'completed', 'canceled');

create table public.projects (
  id uuid primary key default gen_random_uuid(),
  -- A user deleted (never one with money history: "Section: erasure" below) takes their
  -- projects with them, and leaves those they were hired for without a contractor.
  owner_id uuid not null default auth.uid() references public.users (id) on delete cascade,
  -- The contractor hired, who is paid for its milestones; never the owner.
  contractor_id uuid references public.users (id) on delete set null,
  title text not null check (char_length(title) between 1 and 200),
  description text check (char_length(description) <= 5000),
  status public.project_status not null default 'draft',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  check (contractor_id is distinct from owner_id)
);

comment on table public.projects is
'A homeowner''s project (owner_id) and the contractor hired for it (contractor_id).';

create index projects_owner_id_idx on public.projects (owner_id);

create index projects_contractor_id_idx on public.projects (contractor_id);

create trigger keep_row_timestamps
before insert or update on public.projects
for each row execute function private.keep_row_timestamps();

-- The columns listed cannot hold card data; every other one is read.
create trigger refuse_card_data
before insert or update
on public.projects
for each row
execute function private.refuse_card_data(
  'id', 'owner_id', 'contractor_id', 'status', 'created_at', 'updated_at'
);

/** True when the requesting user owns the project. */
create or replace function private.owns_project(project uuid) returns boolean
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  return (
    select exists (
      select from public.projects as p
      where p.id = project and p.owner_id = (select auth.uid())
    )
  );
end
$$;

grant execute on function private.owns_project(uuid) to authenticated;

/** True when the requesting user owns the project or is its contractor. */
create or replace function private.is_project_party(project uuid) returns boolean
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  return (
    select exists (
      select from public.projects as p
      where p.id = project and (select auth.uid()) in (p.owner_id, p.contractor_id)
    )
  );
end
$$;

grant execute on function private.is_project_party(uuid) to authenticated;

create type public.milestone_status as enum ('planned', 'in_progress', 'completed', 'approved');

create table public.project_milestones (
  id uuid primary key default gen_random_uuid(),
  project_id uuid not null references public.projects (id) on delete cascade,
  -- Its place among the project's milestones (1, 2, ...).
  position int not null check (position > 0),
  title text not null check (char_length(title) between 1 and 200),
  -- What its milestone payment moves: a payment takes amount and currency from here.
  amount_minor bigint not null check (amount_minor > 0),
  currency char(3) not null check (currency ~ '^[A-Z]{3}$'),
  status public.milestone_status not null default 'planned',
  due_on date,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  -- The review (see "Section: the review of a milestone" below). The review trigger sets the
  -- times; the owner writes the reason, by rejecting.
  submitted_at timestamptz,
  review_ends_at timestamptz,
  rejection_reason text check (char_length(rejection_reason) between 1 and 2000),
  rejected_at timestamptz,
  unique (project_id, position)
);

comment on table public.project_milestones is
'A milestone of a project and the amount (minor units of currency) due when it is done.';

comment on column public.project_milestones.status is
'planned or in_progress while the work goes on; completed once the contractor submits it for '
'review (submit_milestone); back to in_progress when the owner rejects it (reject_milestone); '
'approved when its payment is released.';

comment on column public.project_milestones.submitted_at is
'When the contractor last submitted the milestone for review; set by the review trigger.';

comment on column public.project_milestones.review_ends_at is
'When the owner''s review of the submission ends (milestone_review_window_seconds after it); '
'after it, with no open dispute, the payee may release the payment.';

comment on column public.project_milestones.rejection_reason is
'Why the owner sent the last submission back: written by rejecting, cleared by the next '
'submission.';

create trigger keep_row_timestamps
before insert or update on public.project_milestones
for each row execute function private.keep_row_timestamps();

-- The columns listed cannot hold card data; every other one is read.
create trigger refuse_card_data
before insert or update
on public.project_milestones
for each row
execute function private.refuse_card_data(
  'id',
  'project_id',
  'status',
  'due_on',
  'created_at',
  'updated_at',
  'submitted_at',
  'review_ends_at',
  'rejected_at'
);

-- Section: the review of a milestone
--
-- Against fake completion claims, a milestone's payment is released only once its contractor
-- has submitted the milestone for review (escrow_and_milestone_payments.sql refuses a release
-- before). The contractor submits it (completed); the owner, who pays, approves it by
-- releasing its payment (approved) or rejects it with a written reason, which sends it back
-- (in_progress) for the contractor to submit again. A submission opens a review window: once
-- it ends with no open dispute, the payee may release the payment (release_milestone_payment).
-- The trigger below holds these moves, whoever asks and however (an RPC or a PATCH of the
-- table).

insert into private.settings (key, value, description)
values (
  'milestone_review_window_seconds', '604800',
  'How long the owner has to review a submitted milestone (approve it by releasing its '
  || 'payment, or reject it) before the payee may release the payment, in seconds.'
);

/** The requesting user's part in the project: 'owner', 'contractor', or null. */
create or replace function private.project_party(project uuid) returns text
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  return (
    select case (select auth.uid())
      when p.owner_id then 'owner'
      when p.contractor_id then 'contractor'
    end
    from public.projects as p
    where p.id = project
  );
end
$$;

grant execute on function private.project_party(uuid) to authenticated;

/**
 * BEFORE UPDATE trigger on project_milestones: the moves of a milestone's status, and who may
 * make each.
 *
 * - planned>in_progress: the owner or the contractor (the work starts);
 * - planned or in_progress>completed: the contractor submits it for review; the review window
 *   opens (submitted_at, review_ends_at) and an earlier rejection is cleared;
 * - completed>in_progress: the owner rejects the submission with a written reason of 10 to
 *   2000 characters (rejection_reason, rejected_at), before its review window ends;
 * - any>approved: only once a payment of the milestone is released (the release approves it);
 * - nothing leaves approved.
 *
 * submitted_at, review_ends_at and rejected_at are the trigger's to set; rejection_reason is
 * written only by a rejection. The contractor changes nothing but the status.
 */
create or replace function private.check_milestone_review() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  party text := private.project_party(old.project_id);
  allowed text[];
begin
  new.submitted_at := old.submitted_at;
  new.review_ends_at := old.review_ends_at;
  new.rejected_at := old.rejected_at;
  if party = 'contractor'
    and (new.project_id, new.position, new.title, new.amount_minor, new.currency, new.due_on)
    is distinct from
    (old.project_id, old.position, old.title, old.amount_minor, old.currency, old.due_on) then
    raise exception 'the contractor of project % changes only the status of milestone %',
    old.project_id, old.id
    using errcode = 'PT403';
  end if;
  if new.status = old.status then
    if new.rejection_reason is distinct from old.rejection_reason then
      raise exception 'milestone %: its rejection reason is written only by rejecting its '
      'submission', old.id
      using errcode = 'PT409', hint = 'call reject_milestone';
    end if;
    return new;
  end if;

  if new.status = 'approved' then
    if not exists (
      select from public.milestone_payments as mp
      where mp.milestone_id = old.id and mp.status = 'released'
    ) then
      raise exception 'milestone % is approved only by releasing its payment', old.id
      using errcode = 'PT409',
      hint = 'the owner releases its milestone payment (release_milestone_payment)';
    end if;
    new.rejection_reason := old.rejection_reason;
    return new;
  end if;
  allowed := case old.status::text || '>' || new.status::text
    when 'planned>in_progress' then array['owner', 'contractor']
    when 'planned>completed' then array['contractor']
    when 'in_progress>completed' then array['contractor']
    when 'completed>in_progress' then array['owner']
  end;
  if allowed is null then
    raise exception 'milestone % cannot go from % to %', old.id, old.status, new.status
    using errcode = 'PT409';
  end if;
  if party is null or not party = any(allowed) then
    raise exception 'only the % of project % may move milestone % from % to %',
    array_to_string(allowed, ' or '), old.project_id, old.id, old.status, new.status
    using errcode = 'PT403';
  end if;

  if new.status = 'completed' then
    new.submitted_at := now();
    new.review_ends_at := now() + make_interval(
      secs => (private.setting('milestone_review_window_seconds') #>> '{}')::bigint
    );
    new.rejection_reason := null;
    new.rejected_at := null;
  elsif old.status = 'completed' then
    if old.review_ends_at <= now() then
      raise exception 'the review of milestone % ended at %: it can no longer be rejected',
      old.id, old.review_ends_at
      using errcode = 'PT409', hint = 'open a dispute over its payment instead';
    end if;
    if not private.is_written(new.rejection_reason, 2000) then
      raise exception 'rejecting milestone % needs a written reason of 10 to 2000 characters',
      old.id
      using errcode = 'PT422';
    end if;
    new.submitted_at := null;
    new.review_ends_at := null;
    new.rejected_at := now();
  elsif new.rejection_reason is distinct from old.rejection_reason then
    raise exception 'milestone %: its rejection reason is written only by rejecting its '
    'submission', old.id
    using errcode = 'PT409', hint = 'call reject_milestone';
  end if;
  return new;
end
$$;

create trigger check_milestone_review
before update on public.project_milestones
for each row execute function private.check_milestone_review();

/**
 * When the review of the milestone's submission ends, or null when the milestone is not
 * submitted (not completed). Security definer: the payee of a payment reads it even when no
 * longer a party to the project.
 */
create or replace function private.milestone_review_ends_at(milestone uuid) returns timestamptz
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  return (
    select m.review_ends_at
    from public.project_milestones as m
    where m.id = milestone and m.status = 'completed'
  );
end
$$;

grant execute on function private.milestone_review_ends_at(uuid) to admin;
grant execute on function private.milestone_review_ends_at(uuid) to authenticated;
grant execute on function private.milestone_review_ends_at(uuid) to escrow_service;
grant execute on function private.milestone_review_ends_at(uuid) to payment_service;

-- Section: erasure
--
-- A user may ask to be forgotten (GDPR Art. 17), but the money they moved must stay honest:
-- financial records, the ledger and the audit chain are kept, whole and verifiable, for as
-- long as their retention asks. So a user is never deleted once money moved for them: their
-- personal data is erased instead. Erasure pseudonymizes the profile (public.users), the
-- Supabase account (auth.users and what hangs off it) and the free text they wrote about their
-- payment and payout methods, ends their sessions, bans the account, and shreds the key under
-- which the audit trail fingerprinted their personal data (audit_capture.sql), so that the
-- fingerprints in sealed audit rows, which are never changed, can no longer be linked to any
-- value. Ids and amounts stay: every payment, transfer and audit row still names the same
-- (now anonymous) user.
--
-- Erasure is refused (PT409, nothing changed) while the user has open money: a payment not
-- yet settled, funded escrow, a withdrawal under way, an open dispute, a pending processor
-- transaction, a live subscription or a wallet balance. Deleting a user (as Supabase's auth
-- server does, `delete from auth.users`) who has any money history is refused too (PT409),
-- with a hint to erase instead; a user without it is deleted with everything that is theirs.

-- Section: erasure: money history and open money

/**
 * What money history `subject` has, one line per kind (empty when none): payments as payer
 * or payee, processor transactions, escrow held for them or for a project they own, a wallet,
 * withdrawals and their approvals, disputes opened or resolved, subscriptions, security
 * alerts about them, incident controls (a suspension of theirs, or a suspension, freeze or
 * notice they made), ledger corrections and setting changes they proposed or decided. A user
 * with any of it is erased, never deleted.
 */
create or replace function private.money_history(subject uuid) returns text[]
language sql
stable
security definer
set search_path = ''
as $$
  select array_remove(array[
    case when exists (
      select from public.milestone_payments as mp where subject in (mp.payer_id, mp.payee_id)
    ) then 'milestone payments' end,
    case when exists (
      select from public.payment_transactions as t where t.user_id = subject
    ) then 'processor transactions' end,
    case when exists (
      select from public.escrow_accounts as e
      where e.user_id = subject
        or e.project_id in (select p.id from public.projects as p where p.owner_id = subject)
    ) then 'escrow accounts' end,
    case when exists (
      select from private.ledger_accounts as a where a.user_id = subject
    ) then 'a wallet in the ledger' end,
    case when exists (
      select from public.withdrawals as w where w.user_id = subject
    ) then 'withdrawals' end,
    case when exists (
      select from public.withdrawal_approvals as wa where wa.approved_by = subject
    ) then 'withdrawal approvals' end,
    case when exists (
      select from public.disputes as d where subject in (d.opened_by, d.resolved_by)
    ) then 'disputes' end,
    case when exists (
      select from public.subscriptions as s where s.user_id = subject
    ) then 'subscriptions' end,
    case when exists (
      select from public.security_alerts as sa where sa.user_id = subject
    ) then 'security alerts' end,
    case when exists (
      select from public.payment_suspensions as ps
      where subject in (ps.user_id, ps.suspended_by, ps.lifted_by)
    ) or exists (
      select from public.platform_freezes as pf where subject in (pf.frozen_by, pf.lifted_by)
    ) or exists (
      select from public.incident_notices as n where n.sent_by = subject
    ) then 'incident controls' end,
    case when exists (
      select from public.ledger_corrections as lc where subject in (lc.proposed_by, lc.decided_by)
    ) then 'ledger corrections' end,
    case when exists (
      select from public.setting_changes as sc
      where subject in (sc.proposed_by, sc.approved_by, sc.canceled_by)
    ) then 'setting changes' end
  ], null)
$$;

/**
 * What money of `subject` is still open, one line per item naming it (empty when none):
 * milestone payments pending, funded or disputed (as payer or payee), escrow with a balance
 * held for them, withdrawals requested, approved or processing, open disputes they are a
 * party to, pending processor transactions, live subscriptions, and wallets whose balance
 * (posted or pending) is not zero.
 */
create or replace function private.open_money(subject uuid) returns text[]
language sql
stable
security definer
set search_path = ''
as $$
  select coalesce(array_agg(item order by item), array[]::text[])
  from (
    select format('milestone payment %s is %s', mp.id, mp.status) as item
    from public.milestone_payments as mp
    where subject in (mp.payer_id, mp.payee_id)
      and mp.status in ('pending', 'funded', 'disputed')
    union all
    select format('escrow account %s holds %s %s', e.id, e.balance_minor, e.currency)
    from public.escrow_accounts as e
    where e.user_id = subject and e.balance_minor <> 0
    union all
    select format('withdrawal %s is %s', w.id, w.status)
    from public.withdrawals as w
    where w.user_id = subject and w.status in ('requested', 'approved', 'processing')
    union all
    select format('dispute %s is open', d.id)
    from public.disputes as d
    inner join public.milestone_payments as mp on mp.id = d.milestone_payment_id
    where d.status = 'open' and subject in (d.opened_by, mp.payer_id, mp.payee_id)
    union all
    select format('processor transaction %s is pending', t.id)
    from public.payment_transactions as t
    where t.user_id = subject and t.status = 'pending'
    union all
    select format('subscription %s is %s', s.id, s.status)
    from public.subscriptions as s
    where s.user_id = subject and s.status not in ('canceled')
    union all
    select format(
      'wallet %s holds %s %s posted and %s %s pending', b.account_id,
      b.credits_posted - b.debits_posted, b.currency,
      b.credits_pending - b.debits_pending, b.currency
    )
    from private.ledger_limited_balances as b
    where b.user_id = subject
      and (b.credits_posted <> b.debits_posted or b.credits_pending <> b.debits_pending)
  ) as open_items
$$;

-- Section: erasure: deleting a user
--
-- Supabase's auth server deletes a user with `delete from auth.users`, which cascades to the
-- profile (public.users) and from it to what is the user's alone: payment and payout methods,
-- processor customers and accounts, notifications, limits' counters, the projects they own
-- (with their milestones) and their place as a project's contractor (set null). A user with
-- money history is refused here, before any foreign key is reached.

/**
 * BEFORE DELETE on public.users: a user with money history (private.money_history) is never
 * deleted (PT409, hint: erase them); the delete of any other user goes on.
 */
create or replace function private.refuse_delete_with_money_history() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  history text[] := private.money_history(old.id);
begin
  if cardinality(history) > 0 then
    raise exception 'user % has money history (%) and is never deleted', old.id,
    array_to_string(history, ', ')
    using errcode = 'PT409',
    hint = 'erase the user instead: public.erase_user(user_id, reason), or '
    || '`payguard users erase USER_ID --reason ...`';
  end if;
  return old;
end
$$;

-- The roles that delete profiles (service_role; the owner through the cascade from
-- auth.users) run the trigger.
grant execute on function private.money_history(uuid) to service_role;

grant execute on function private.refuse_delete_with_money_history() to service_role;

create trigger refuse_delete_with_money_history
before delete on public.users
for each row execute function private.refuse_delete_with_money_history();

-- Section: erasure: the erasure itself

/**
 * Erase `subject`'s personal data, for `reason` (10 to 2000 characters of writing, naming no
 * one): PT422 without it, PT404 for no such user, PT409 for a user already erased or with
 * open money (private.open_money, named in the message and nothing changed).
 *   * public.users: email, full_name and phone set to null, erased_at set;
 *   * auth.users: email, phone, password, tokens and both metadata cleared, banned for ever;
 *     the account's MFA factors, identities, sessions, refresh and one-time tokens deleted
 *     (each of the last four where the auth server has the table);
 *   * payment and payout methods: nickname and metadata cleared;
 *   * notifications: deleted;
 *   * the user's audit fingerprint key: deleted (crypto-shredding, audit_capture.sql).
 * Ids, amounts, the ledger and the audit trail are left whole. Writes an ERASE audit row
 * with the reason. Returns what was done. Only its owner executes it: admins call
 * public.erase_user, operators `payguard users erase`.
 */
create or replace function private.erase_user(subject uuid, reason text) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  profile public.users;
  open_items text[];
  erased timestamptz := now();
  methods bigint;
  payout bigint;
  notes bigint;
  factors bigint;
  removed bigint;
  auth_rows jsonb;
  auth_table text;
  auth_column text;
  actor private.audit_actor;
  summary jsonb;
begin
  if not private.is_written(reason, 2000) then
    raise exception 'erasing user % needs a written reason of 10 to 2000 characters', subject
    using errcode = 'PT422';
  end if;
  select * into profile from public.users as u where u.id = subject for update;
  if not found then
    raise exception 'no user %', subject using errcode = 'PT404';
  end if;
  if profile.erased_at is not null then
    raise exception 'user % was already erased at %', subject, profile.erased_at
    using errcode = 'PT409';
  end if;
  open_items := private.open_money(subject);
  if cardinality(open_items) > 0 then
    raise exception 'user % has open money and cannot be erased: %', subject,
    array_to_string(open_items, '; ')
    using errcode = 'PT409',
    hint = 'settle, cancel or pay out each of these first, then erase';
  end if;

  update public.users as u
  set email = null, full_name = null, phone = null, erased_at = erased
  where u.id = subject;
  update public.payment_methods as m set nickname = null, metadata = '{}'
  where m.user_id = subject and (m.nickname is not null or m.metadata <> '{}');
  get diagnostics methods = row_count;
  update public.payout_methods as m set nickname = null, metadata = '{}'
  where m.user_id = subject and (m.nickname is not null or m.metadata <> '{}');
  get diagnostics payout = row_count;
  delete from public.notifications as n where n.user_id = subject;
  get diagnostics notes = row_count;

  update auth.users as a
  -- The auth server reads its token columns as strings: emptied, never null.
  set email = null, phone = null, encrypted_password = '', email_confirmed_at = null,
    phone_confirmed_at = null, confirmation_token = '', recovery_token = '',
    email_change = '', last_sign_in_at = null, raw_user_meta_data = '{}',
    raw_app_meta_data = '{}', banned_until = 'infinity', updated_at = erased
  where a.id = subject;
  delete from auth.mfa_factors as f where f.user_id = subject;
  get diagnostics factors = row_count;
  auth_rows := jsonb_build_object('mfa_factors', factors);
  -- Tables the auth server has on Supabase, not all of them in every version: each is
  -- cleared where it exists and has a user_id column (named apart: dynamic SQL).
  foreach auth_table in array array['identities', 'sessions', 'refresh_tokens', 'one_time_tokens']
  loop
    if exists (
      select from pg_catalog.pg_attribute as att
      where att.attrelid = to_regclass(format('%I.%I', 'auth', auth_table))
        and att.attname = 'user_id' and not att.attisdropped
    ) then
      execute format('delete from %I.%I where user_id::text = $1', 'auth', auth_table)
      using subject::text;
      get diagnostics removed = row_count;
      auth_rows := auth_rows || jsonb_build_object(auth_table, removed);
    end if;
  end loop;

  -- A change of email or phone waiting for confirmation, and its tokens, where the auth
  -- server's version has them: emptied (named apart: dynamic SQL).
  foreach auth_column in array array[
    'phone_change', 'phone_change_token', 'email_change_token_new',
    'email_change_token_current', 'reauthentication_token'
  ]
  loop
    if exists (
      select from pg_catalog.pg_attribute as att
      where att.attrelid = 'auth.users'::regclass and att.attname = auth_column
        and not att.attisdropped
    ) then
      execute format('update %I.users set %I = $1 where id = $2', 'auth', auth_column)
      using '', subject;
    end if;
  end loop;
  -- The auth server's own log: its entries about the user hold their email.
  if to_regclass(format('%I.%I', 'auth', 'audit_log_entries')) is not null then
    execute format(
      'delete from %I.audit_log_entries where payload ->> $2 = $1', 'auth'
    )
    using subject::text, 'actor_id';
    get diagnostics removed = row_count;
    auth_rows := auth_rows || jsonb_build_object('audit_log_entries', removed);
  end if;

  delete from private.audit_fingerprint_keys as k where k.user_id = subject;

  summary := jsonb_build_object(
    'user_id', subject,
    'erased_at', erased,
    'payment_methods', methods,
    'payout_methods', payout,
    'notifications_deleted', notes,
    'auth_rows_deleted', auth_rows,
    'fingerprint_key', 'shredded'
  );
  actor := private.audit_actor();
  insert into public.payment_audit_logs (
    operation, entity_type, entity_id, user_id, user_role, ip_address, user_agent,
    new_values, success, metadata
  )
  values (
    'ERASE', 'users', subject::text, actor.user_id, actor.user_role, actor.ip_address,
    actor.user_agent, summary || jsonb_build_object('reason', reason), true, actor.metadata
  );
  return summary;
end
$$;

/**
 * An admin erases a user's personal data (private.erase_user), for a written reason. Needs
 * the admin role (an admin or system admin's token, from the access token hook), a
 * multi-factor session (aal2) and a recent MFA step-up, as every staff change to users does
 * (PT403 otherwise); an admin never erases themselves (PT409).
 */
create or replace function public.erase_user(user_id uuid, reason text) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  claims jsonb := coalesce(nullif(current_setting('request.jwt.claims', true), ''), '{}')::jsonb;
begin
  if not private.has_app_role(array['admin', 'system_admin']::public.app_role []) then
    raise exception 'only an admin may erase a user' using errcode = 'PT403';
  end if;
  if claims ->> 'aal' is distinct from 'aal2' then
    raise exception 'erasing a user needs multi-factor authentication (aal2)'
    using errcode = 'PT403', hint = 'verify a second factor, then retry';
  end if;
  if not private.has_recent_step_up() then
    raise exception 'erasing a user needs a recent MFA step-up'
    using errcode = 'PT403', hint = 'verify a second factor again, then retry';
  end if;
  if erase_user.user_id = (select auth.uid()) then
    raise exception 'an admin does not erase their own account (%)', erase_user.user_id
    using errcode = 'PT409', hint = 'another admin erases it';
  end if;
  return private.erase_user(erase_user.user_id, erase_user.reason);
end
$$;

grant execute on function public.erase_user(uuid, text) to admin;

revoke execute on function public.erase_user(uuid, text) from service_role;
