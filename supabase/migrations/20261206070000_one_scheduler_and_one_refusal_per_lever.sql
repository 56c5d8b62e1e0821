-- One scheduler for every domain's pg_cron jobs (private.schedule_job), and one refusal for
-- each incident lever (private.refuse_if_suspended, private.refuse_if_frozen), used where
-- each was written out again. What each does, and what it answers, is unchanged.


/**
 * Schedule `job_command` as pg_cron job `job_name` on `job_schedule`, where the extension is
 * installed in this database; a job of the same name is replaced, so it is safe to run again.
 * Returns what it did; without pg_cron, nothing is scheduled and the answer ends with
 * `without_cron`, what to run instead.
 */
create or replace function private.schedule_job(
  job_name text, job_schedule text, job_command text, without_cron text
) returns text
language plpgsql
set search_path = ''
as $$
begin
  if not exists (select from pg_catalog.pg_extension as e where e.extname = 'pg_cron') then
    return 'pg_cron is not installed in this database: nothing scheduled; ' || without_cron;
  end if;
  -- Dynamic, its schema named apart: the cron schema exists only where the extension does.
  execute format('select %I.schedule($1, $2, $3)', 'cron')
  using job_name, job_schedule, job_command;
  return 'scheduled with pg_cron: ' || job_name;
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

/**
 * Schedule private.release_lapsed_reviews every five minutes with pg_cron, where the extension
 * is installed in this database (as the audit sealer is, audit_chain.sql); a job of the same
 * name is replaced, so it is safe to run again. Returns what it did.
 */
create or replace function private.schedule_lapsed_reviews() returns text
language plpgsql
set search_path = ''
as $$
begin
  return private.schedule_job(
    'payguard-lapsed-reviews', '*/5 * * * *', 'select private.release_lapsed_reviews()',
    'run select private.release_lapsed_reviews() from a scheduler of your own'
  );
end
$$;

/**
 * Schedule private.apply_due_setting_changes() every minute where pg_cron is installed (in
 * the database where it runs its jobs); elsewhere changes apply when approved, or when the
 * function is called. Returns what it did.
 */
create or replace function private.schedule_setting_changes() returns text
language plpgsql
set search_path = ''
as $$
begin
  return private.schedule_job(
    'payguard-setting-changes', '* * * * *', 'select private.apply_due_setting_changes()',
    'setting changes apply when approved, or by select private.apply_due_setting_changes()'
  );
end
$$;

/**
 * Schedule the purge of closed records with pg_cron, daily at 03:17 UTC, where the extension
 * is installed in this database; a job of the same name is replaced, so it is safe to run
 * again. Returns what it did.
 */
create or replace function private.schedule_closed_records_purge() returns text
language plpgsql
set search_path = ''
as $$
begin
  return private.schedule_job(
    'payguard-closed-records-purge', '17 3 * * *', 'select private.purge_closed_records()',
    'purge with `payguard retention purge`'
  );
end
$$;

/**
 * Refuse (PT403) what would move money of `subject` while their payments are suspended, with
 * `refusal_hint`; do nothing otherwise (a null subject included).
 */
create or replace function private.refuse_if_suspended(
  subject uuid, refusal_hint text default 'contact support'
) returns void
language plpgsql
stable
set search_path = ''
as $$
begin
  if private.payment_suspension(subject) is not null then
    raise exception 'the payments of user % are suspended', subject
    using errcode = 'PT403', hint = refusal_hint;
  end if;
end
$$;

/**
 * Refuse (PT503) what would start a movement of `freeze_scope` (payouts, funding) while it is
 * frozen platform-wide, with `refusal_hint`; do nothing otherwise.
 */
create or replace function private.refuse_if_frozen(freeze_scope text, refusal_hint text)
returns void
language plpgsql
stable
set search_path = ''
as $$
begin
  if private.platform_freeze(freeze_scope) is not null then
    raise exception '% frozen platform-wide for now',
    case when freeze_scope = 'funding' then 'funding is' else freeze_scope || ' are' end
    using errcode = 'PT503', hint = refusal_hint;
  end if;
end
$$;

/**
 * BEFORE INSERT trigger on funding_attempts: no funding attempt begins while funding is frozen
 * (PT503), nor for a payer whose money movement is suspended (PT403).
 */
create or replace function private.refuse_frozen_funding() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  payer uuid := (
    select mp.payer_id from public.milestone_payments as mp where mp.id = new.milestone_payment_id
  );
begin
  perform private.refuse_if_frozen('funding', 'try again once operations lift the freeze');
  perform private.refuse_if_suspended(payer);
  return new;
end
$$;

/**
 * BEFORE INSERT OR UPDATE trigger on milestone_payments: a user whose money movement is
 * suspended creates no milestone payment (PT403), nor does anyone create one that names an
 * erased payer or payee (PT409); and a payment whose payer is suspended, or
 * whose releaser is, is not released (PT403), whoever releases it: the payer, the payee after
 * a lapsed review, or private.release_lapsed_reviews. Anything else (a cancel, the
 * processor's record of a funding, staff settling a dispute) goes on.
 */
create or replace function private.refuse_suspended_payer() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  actor uuid := (select auth.uid());
begin
  if tg_op = 'INSERT' then
    perform private.refuse_if_suspended(actor);
    -- No new money for an erased user (users_and_projects.sql, the erasure).
    if exists (
      select from public.users as u
      where u.id in (new.payer_id, new.payee_id) and u.erased_at is not null
    ) then
      raise exception 'milestone payment % names an erased user', new.id
      using errcode = 'PT409', hint = 'an erased user is paid and pays nothing new';
    end if;
  elsif old.status = 'funded' and new.status = 'released' then
    perform private.refuse_if_suspended(
      old.payer_id, 'the payment waits until the suspension is lifted'
    );
    perform private.refuse_if_suspended(actor);
  end if;
  return new;
end
$$;

/**
 * BEFORE INSERT trigger on withdrawals: a user whose money movement is suspended requests no
 * withdrawal (PT403).
 */
create or replace function private.refuse_suspended_withdrawal() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.refuse_if_suspended(new.user_id);
  return new;
end
$$;

/**
 * BEFORE INSERT trigger on payment_transactions: a charge a user starts (the request's role is
 * authenticated) begins neither while funding is frozen (PT503) nor while their payments are
 * suspended (PT403). What the processor reports (payment_service) is recorded whatever holds.
 */
create or replace function private.refuse_frozen_charge() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  actor uuid := (select auth.uid());
begin
  if current_setting('role', true) is distinct from 'authenticated' then
    return new;
  end if;
  perform private.refuse_if_frozen('funding', 'try again once operations lift the freeze');
  perform private.refuse_if_suspended(actor);
  return new;
end
$$;

/**
 * Refuse to start a request of a payout step (begin_withdrawal_step, stripe_border.sql) for
 * `withdrawal`: not while payouts are frozen (PT503), not for an owner whose payments are
 * suspended (PT403), not while its payout method is in its cool-down unless two admins
 * approved it (PT409). A request made already is resumed under its key whatever holds: the
 * processor may have carried it out.
 */
create or replace function private.refuse_payout_start(withdrawal uuid) returns void
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  owner_id uuid := (select w.user_id from public.withdrawals as w where w.id = withdrawal);
begin
  perform private.refuse_if_frozen(
    'payouts', 'the withdrawal is paid out once operations lift the freeze'
  );
  perform private.refuse_if_suspended(
    owner_id, 'the withdrawal waits until the suspension is lifted'
  );
  if not private.withdrawal_clear_of_cool_down(withdrawal) then
    raise exception 'withdrawal %: its payout method is in its cool-down', withdrawal
    using errcode = 'PT409',
    hint = 'it is paid out when the cool-down ends, or once two admins approve it';
  end if;
end
$$;
