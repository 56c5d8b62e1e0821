-- The review of a milestone, against fake completion claims: the contractor submits a
-- milestone (submit_milestone), the owner approves it by releasing its payment or rejects it
-- with a reason (reject_milestone), and a release before submission is refused by the
-- transition trigger. A submission opens a review window (milestone_review_window_seconds):
-- once it ends with no open dispute, the payee may release the payment
-- (release_lapsed_milestone_payment), and private.release_lapsed_reviews, for a scheduler,
-- tells both parties so and, when milestone_review_auto_release is on, releases it. Each step
-- notifies the party concerned.

set local check_function_bodies = off;

alter table public.project_milestones
add column submitted_at timestamptz,
add column review_ends_at timestamptz,
add column rejection_reason text check (char_length(rejection_reason) between 1 and 2000),
add column rejected_at timestamptz;

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

-- The card-data guard and the audit trail name the new columns that cannot hold card data.
select private.renew_card_data_guard('public.project_milestones');

select private.renew_audit_trail('public.project_milestones');

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

/**
 * Who is asking, for the transition rules: a service or staff role by its database role
 * (`requester`, the caller's current_user), else the payer or payee by the request's user id;
 * `lapsed_review` for private.release_lapsed_reviews (the owner of the table, with no user,
 * while payguard.releasing_lapsed_review names this payment). Null for anyone else. Security
 * definer because the service roles cannot read `auth`.
 */
create or replace function private.milestone_payment_actor(
  payment public.milestone_payments, requester name
) returns text
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  return (
    select case
      when requester in ('payment_service', 'escrow_service', 'admin') then requester::text
      when (select auth.uid()) = payment.payer_id then 'payer'
      when (select auth.uid()) = payment.payee_id then 'payee'
      when (select auth.uid()) is null
        and nullif(current_setting('payguard.releasing_lapsed_review', true), '')
        = payment.id::text
        and requester = (
          select pg_catalog.pg_get_userbyid(c.relowner) from pg_catalog.pg_class as c
          where c.oid = 'public.milestone_payments'::regclass
        ) then 'lapsed_review'
    end
  );
end
$$;

/**
 * BEFORE UPDATE trigger on milestone_payments: the moves a payment may make, and who may
 * make each. Its milestone, payer, payee, amount and currency never change; its
 * PaymentIntent id and escrow account are set once; funded_at and released_at are the
 * trigger's to set.
 *
 * - pending>funded: payment_service, from the processor's verified events, with the
 *   PaymentIntent id, into the project's open escrow account;
 * - pending>failed: payment_service, the charge was declined or canceled (nothing moved);
 *   failed>funded when a new attempt succeeds; pending or failed>canceled by the payer;
 * - funded>released: only once its milestone is submitted for review (project_milestones
 *   completed); by the payer, or, once the review window has ended, by the payee or
 *   private.release_lapsed_reviews; with no open dispute, after the escrow hold period, and
 *   for the payer or payee with a recent MFA step-up at or above the MFA threshold;
 * - funded>refunded: payment_service, when the processor confirms a refund of the whole
 *   charge;
 * - funded>disputed: a party or payment_service (a chargeback), by opening a dispute over
 *   the payment;
 * - disputed>released, refunded or split: staff (admin, escrow_service) who are no party to
 *   it, while its dispute is open or by deciding it (a split only by a decision with the
 *   payee's share);
 * - disputed>refunded when the issuer decides a chargeback for the payer (the dispute
 *   resolved as a refund), disputed>funded when it decides it for us (the dispute
 *   withdrawn): payment_service, and the money never left escrow in the ledger, so nothing
 *   is posted again.
 *
 * Nothing is released, refunded or split out of a frozen escrow account.
 */
create or replace function private.check_milestone_payment_transition() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  actor text := private.milestone_payment_actor(old, current_user);
  allowed text[];
  held_until timestamptz;
  review_ends timestamptz;
begin
  if (new.milestone_id, new.payer_id, new.payee_id, new.amount_minor, new.currency)
    is distinct from
    (old.milestone_id, old.payer_id, old.payee_id, old.amount_minor, old.currency) then
    raise exception 'milestone payment %: its milestone, payer, payee, amount and currency '
    'never change', old.id
    using errcode = 'PT409';
  end if;
  if old.processor_payment_intent_id is not null
    and new.processor_payment_intent_id is distinct from old.processor_payment_intent_id then
    raise exception 'milestone payment %: its PaymentIntent id never changes once set', old.id
    using errcode = 'PT409';
  end if;
  if old.escrow_account_id is not null
    and new.escrow_account_id is distinct from old.escrow_account_id then
    raise exception 'milestone payment %: its escrow account never changes once set', old.id
    using errcode = 'PT409';
  end if;
  new.funded_at := old.funded_at;
  new.released_at := old.released_at;
  if new.status = old.status then
    return new;
  end if;

  allowed := case old.status::text || '>' || new.status::text
    when 'pending>funded' then array['payment_service']
    when 'pending>failed' then array['payment_service']
    when 'failed>funded' then array['payment_service']
    when 'pending>canceled' then array['payer']
    when 'failed>canceled' then array['payer']
    when 'funded>released' then array['payer']
    when 'funded>refunded' then array['payment_service']
    when 'funded>disputed' then array['payer', 'payee', 'payment_service']
    when 'disputed>funded' then array['payment_service']
    when 'disputed>released' then array['admin', 'escrow_service']
    when 'disputed>refunded' then array['admin', 'escrow_service', 'payment_service']
    when 'disputed>split' then array['admin', 'escrow_service']
  end;
  -- The payee, or the scheduler's release of lapsed reviews, only once the review window of
  -- the milestone has ended (checked with the release below).
  if old.status = 'funded' and new.status = 'released' and actor in ('payee', 'lapsed_review') then
    allowed := array[actor];
  end if;
  if allowed is null then
    raise exception 'milestone payment % cannot go from % to %', old.id, old.status, new.status
    using errcode = 'PT409';
  end if;
  if actor is null or not actor = any(allowed) then
    raise exception 'only the % may move milestone payment % from % to %',
    array_to_string(allowed, ' or '), old.id, old.status, new.status
    using errcode = 'PT403';
  end if;
  if actor in ('admin', 'escrow_service') and private.is_milestone_payment_party(old.id) then
    raise exception 'a party to milestone payment % cannot settle it', old.id
    using errcode = 'PT403', hint = 'another admin decides';
  end if;
  if new.status = 'disputed' and not private.has_open_dispute(old.id) then
    raise exception 'milestone payment % is disputed by opening a dispute over it', old.id
    using errcode = 'PT409', hint = 'insert into disputes, or call open_dispute';
  end if;
  -- payment_service disputes, refunds from a dispute and restores a disputed payment only for
  -- a chargeback: the open one, or the one the issuer has just decided.
  if actor = 'payment_service' and new.status = 'disputed' and not exists (
    select from public.disputes as d
    where d.milestone_payment_id = old.id and d.status = 'open'
      and d.processor_dispute_id is not null
  ) then
    raise exception 'milestone payment % is disputed by payment_service only for a chargeback',
    old.id
    using errcode = 'PT403';
  end if;
  if actor = 'payment_service' and old.status = 'disputed' and not exists (
    select from public.disputes as d
    where d.id = nullif(current_setting('payguard.settling_dispute', true), '')::uuid
      and d.milestone_payment_id = old.id and d.processor_dispute_id is not null
      and d.resolved_at = now()
      and d.status = case new.status when 'funded' then 'withdrawn' else 'resolved' end
        ::public.dispute_status
  ) then
    raise exception 'milestone payment % leaves dispute only by the decision of its chargeback',
    old.id
    using errcode = 'PT403';
  end if;
  if old.status = 'disputed' and new.status in ('released', 'refunded')
    and not private.has_open_dispute(old.id)
    and not exists (
      select from public.disputes as d
      where d.id = nullif(current_setting('payguard.settling_dispute', true), '')::uuid
        and d.milestone_payment_id = old.id and d.status = 'resolved' and d.resolved_at = now()
    ) then
    raise exception 'milestone payment % has no open dispute: a disputed payment is settled by '
    'deciding a dispute over it', old.id
    using errcode = 'PT409',
    hint = 'a party opens a dispute over it; staff resolve that dispute with a written resolution';
  end if;
  if new.status in ('released', 'refunded', 'split')
    and private.escrow_status(old.escrow_account_id) = 'frozen' then
    raise exception 'the escrow account of milestone payment % is frozen', old.id
    using errcode = 'PT409';
  end if;

  if new.status = 'funded' and old.status <> 'disputed' then
    if new.processor_payment_intent_id is null then
      raise exception 'milestone payment % needs the processor''s PaymentIntent id to be funded',
      old.id
      using errcode = 'PT422';
    end if;
    new.escrow_account_id := coalesce(
      new.escrow_account_id,
      private.escrow_account_for_milestone(new.milestone_id, new.currency)
    );
    if private.escrow_status(new.escrow_account_id) is distinct from 'open' then
      new.escrow_account_id := null;
    end if;
    if new.escrow_account_id is null then
      raise exception 'milestone payment % has no open escrow account in % to be funded into',
      old.id, new.currency
      using errcode = 'PT409', hint = 'the project''s owner opens one first';
    end if;
    new.funded_at := now();
  elsif new.status = 'split' then
    if private.split_share(old.id) is null then
      raise exception 'milestone payment % is split only by a dispute resolved with the '
      'payee''s share', old.id
      using errcode = 'PT422';
    end if;
    new.released_at := now();
  elsif new.status = 'released' then
    if old.status = 'funded' then
      review_ends := private.milestone_review_ends_at(old.milestone_id);
      if review_ends is null then
        raise exception 'milestone payment % cannot be released: its milestone % is not '
        'submitted for review', old.id, old.milestone_id
        using errcode = 'PT409',
        hint = 'the contractor submits the milestone (submit_milestone) first';
      end if;
      if actor <> 'payer' and review_ends > now() then
        raise exception 'milestone payment % is released by its payee only once the review of '
        'milestone % ends, at %', old.id, old.milestone_id, review_ends
        using errcode = 'PT409', hint = 'until then the payer approves it by releasing it';
      end if;
      if private.has_open_dispute(old.id) then
        raise exception 'milestone payment % has an open dispute and cannot be released', old.id
        using errcode = 'PT409';
      end if;
      held_until := private.escrow_held_until(old.funded_at);
      if held_until > now() then
        raise exception 'milestone payment % is held in escrow until %', old.id, held_until
        using errcode = 'PT409',
        hint = 'funds stay in escrow for a hold period after funding';
      end if;
      if actor <> 'lapsed_review' and old.amount_minor >= private.mfa_threshold(old.currency)
        and not private.has_recent_step_up() then
        raise exception 'releasing milestone payment % needs a recent MFA step-up', old.id
        using errcode = 'PT403', hint = 'verify a second factor again, then retry';
      end if;
    end if;
    new.released_at := now();
  end if;
  return new;
end
$$;

insert into private.settings (key, value, description)
values (
  'milestone_review_auto_release', 'false',
  'Whether private.release_lapsed_reviews releases a funded payment whose milestone review '
  || 'window has ended with no open dispute (true), or only tells both parties that the payee '
  || 'may release it (false).'
);

/** AFTER UPDATE trigger on milestone_payments: a released payment approves its milestone. */
create or replace function private.approve_released_milestone() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  update public.project_milestones as m
  set status = 'approved'
  where m.id = new.milestone_id and m.status <> 'approved';
  return null;
end
$$;

create trigger approve_released_milestone
after update of status on public.milestone_payments
for each row
when (new.status = 'released' and old.status is distinct from new.status)
execute function private.approve_released_milestone();

/**
 * For a scheduler, run as the owner: every funded payment whose milestone is submitted and
 * whose review window has ended, with no open dispute. Both parties are told once per
 * submission (milestone.review_lapsed) that the payee may release it. With the
 * milestone_review_auto_release setting on, each one out of its escrow hold is also released
 * (as `lapsed_review`, under the transition trigger's rules); one the trigger refuses (a
 * frozen escrow account) is left for the payee to release. Returns how many payments were
 * found lapsed and how many were released.
 */
create or replace function private.release_lapsed_reviews(
  out lapsed integer, out released integer
)
language plpgsql
security definer
set search_path = ''
as $$
declare
  auto_release boolean := (private.setting('milestone_review_auto_release') #>> '{}')::boolean;
  payment record;
begin
  lapsed := 0;
  released := 0;
  for payment in
    select mp.id, mp.payer_id, mp.payee_id, mp.amount_minor, mp.currency, mp.funded_at,
      m.title, m.submitted_at
    from public.milestone_payments as mp
    join public.project_milestones as m on m.id = mp.milestone_id
    where mp.status = 'funded' and m.status = 'completed' and m.review_ends_at <= now()
      and not private.has_open_dispute(mp.id)
    order by m.review_ends_at, mp.id
    for update of mp skip locked
  loop
    lapsed := lapsed + 1;
    if not exists (
      select from public.notifications as n
      where n.milestone_payment_id = payment.id and n.event = 'milestone.review_lapsed'
        and n.created_at >= payment.submitted_at
    ) then
      perform private.notify(
        payment.payer_id, 'milestone.review_lapsed',
        left('The review of milestone "' || payment.title || '" has ended', 199) || '.',
        payment.id, null, payment.amount_minor, payment.currency
      );
      perform private.notify(
        payment.payee_id, 'milestone.review_lapsed',
        left('The review of milestone "' || payment.title || '" has ended: you may release '
          || 'its payment', 199) || '.',
        payment.id, null, payment.amount_minor, payment.currency
      );
    end if;
    if auto_release and private.escrow_held_until(payment.funded_at) <= now() then
      begin
        perform set_config('payguard.releasing_lapsed_review', payment.id::text, true);
        update public.milestone_payments as mp set status = 'released' where mp.id = payment.id;
        perform set_config('payguard.releasing_lapsed_review', '', true);
        released := released + 1;
      exception when sqlstate 'PT409' or sqlstate 'PT403' then
        perform set_config('payguard.releasing_lapsed_review', '', true);
      end;
    end if;
  end loop;
end
$$;

/**
 * AFTER UPDATE trigger on project_milestones: the review of a milestone. A submission is told
 * to the owner (milestone.submitted), a rejection to the contractor with its reason
 * (milestone.rejected; the whole reason stays on the milestone). Each names the milestone's
 * live payment, if it has one.
 */
create or replace function private.milestone_review_events() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  project public.projects;
  payment uuid;
begin
  if new.status is not distinct from old.status or not (
    new.status = 'completed' or (old.status = 'completed' and new.status = 'in_progress')
  ) then
    return null;
  end if;
  select * into project from public.projects as p where p.id = new.project_id;
  select mp.id into payment from public.milestone_payments as mp
  where mp.milestone_id = new.id and mp.status not in ('canceled', 'refunded');
  if new.status = 'completed' then
    perform private.notify(
      project.owner_id, 'milestone.submitted',
      left('Milestone "' || new.title || '" was submitted for your review', 199) || '.',
      payment, null, new.amount_minor, new.currency
    );
  else
    perform private.notify(
      project.contractor_id, 'milestone.rejected',
      left('Milestone "' || new.title || '" was sent back: ' || new.rejection_reason, 199)
      || '.',
      payment, null, new.amount_minor, new.currency
    );
  end if;
  return null;
end
$$;

create trigger milestone_review_events
after update of status on public.project_milestones
for each row execute function private.milestone_review_events();

/** BEFORE trigger: the velocity limit of the operation the statement performs. */
create or replace function private.limit_rate() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if tg_table_name = 'milestone_payments' and tg_op = 'UPDATE' then
    if new.status = 'released' and old.status is distinct from 'released' then
      perform private.enforce_rate_limit('milestone_payments.release');
    elsif new.status = 'canceled' and old.status is distinct from 'canceled' then
      perform private.enforce_rate_limit('milestone_payments.cancel');
    end if;
  elsif tg_table_name = 'project_milestones' and tg_op = 'UPDATE' then
    if new.status = 'completed' and old.status is distinct from 'completed' then
      perform private.enforce_rate_limit('project_milestones.submit');
    elsif old.status = 'completed' and new.status = 'in_progress' then
      perform private.enforce_rate_limit('project_milestones.reject');
    end if;
  else
    perform private.enforce_rate_limit(tg_table_name || '.' || lower(tg_op));
  end if;
  return case when tg_op = 'DELETE' then old else new end;
end
$$;

-- Submitting and rejecting a milestone are limited as operations of their own.
create trigger limit_rate
before update of status on public.project_milestones
for each row execute function private.limit_rate();

insert into private.rate_limit_rules (operation, rate_level, rpc)
values
('project_milestones.submit', 'medium', 'submit_milestone'),
('project_milestones.reject', 'medium', 'reject_milestone'),
-- The payee's release after a lapsed review: its accepted calls count as releases
-- (milestone_payments.release), its refused calls here.
('milestone_payments.release_lapsed', 'high', 'release_lapsed_milestone_payment');

/**
 * The payer: release a funded payment to the payee, once its milestone is submitted for
 * review (which approves the milestone).
 */
create or replace function private.release_milestone_payment(
  milestone_payment_id uuid, idempotency_key text
)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  parameters jsonb := jsonb_build_object('milestone_payment_id', milestone_payment_id);
  answer jsonb := private.idempotency_replay(
    'release_milestone_payment', idempotency_key, parameters
  );
begin
  if answer is not null then
    return answer;
  end if;
  update public.milestone_payments as mp
  set status = 'released'
  where mp.id = release_milestone_payment.milestone_payment_id
  returning to_jsonb(mp.*) into answer;
  if answer is null then
    raise exception 'no milestone payment % that you may release', milestone_payment_id
    using errcode = 'PT404';
  end if;
  return private.idempotency_store('release_milestone_payment', idempotency_key, parameters, answer);
end
$$;

/**
 * The payee: release a funded payment to oneself once the review of its submitted milestone
 * has ended with no open dispute. The payee may not update a funded payment (its update
 * policy), so this runs as the owner, on the caller's own funded payment only; the transition
 * trigger still decides, with the caller as the payee (private.milestone_payment_actor reads
 * the request's user): a review not ended, an open dispute, the escrow hold, or a large
 * payment without a recent MFA step-up refuses it.
 */
create or replace function private.release_lapsed_milestone_payment(
  milestone_payment_id uuid, idempotency_key text
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  parameters jsonb := jsonb_build_object('milestone_payment_id', milestone_payment_id);
  answer jsonb := private.idempotency_replay(
    'release_lapsed_milestone_payment', idempotency_key, parameters
  );
begin
  if answer is not null then
    return answer;
  end if;
  update public.milestone_payments as mp
  set status = 'released'
  where mp.id = release_lapsed_milestone_payment.milestone_payment_id
    and mp.payee_id = (select auth.uid()) and mp.status = 'funded'
  returning to_jsonb(mp.*) into answer;
  if answer is null then
    raise exception 'no milestone payment % that you may release as its payee',
    milestone_payment_id
    using errcode = 'PT404';
  end if;
  return private.idempotency_store(
    'release_lapsed_milestone_payment', idempotency_key, parameters, answer
  );
end
$$;

/**
 * The contractor: submit a milestone of the project for the owner's review. The contractor
 * may not update a milestone (its update policy is the owner's), so this runs as the owner,
 * on a milestone of the caller's own project only; the review trigger still decides, with
 * the caller as the contractor (private.project_party reads the request's user).
 */
create or replace function private.submit_milestone(milestone_id uuid, idempotency_key text)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  parameters jsonb := jsonb_build_object('milestone_id', milestone_id);
  answer jsonb := private.idempotency_replay('submit_milestone', idempotency_key, parameters);
begin
  if answer is not null then
    return answer;
  end if;
  update public.project_milestones as m
  set status = 'completed'
  where m.id = submit_milestone.milestone_id
    and private.project_party(m.project_id) = 'contractor'
  returning to_jsonb(m.*) into answer;
  if answer is null then
    raise exception 'no milestone % that you may submit', milestone_id
    using errcode = 'PT404';
  end if;
  return private.idempotency_store('submit_milestone', idempotency_key, parameters, answer);
end
$$;

/** The owner: send a submitted milestone back to the contractor, with the reason. */
create or replace function private.reject_milestone(
  milestone_id uuid, reason text, idempotency_key text
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  parameters jsonb := jsonb_build_object('milestone_id', milestone_id, 'reason', reason);
  answer jsonb := private.idempotency_replay('reject_milestone', idempotency_key, parameters);
begin
  if answer is not null then
    return answer;
  end if;
  update public.project_milestones as m
  set status = 'in_progress', rejection_reason = reject_milestone.reason
  where m.id = reject_milestone.milestone_id
  returning to_jsonb(m.*) into answer;
  if answer is null then
    raise exception 'no milestone % that you may reject', milestone_id
    using errcode = 'PT404';
  end if;
  return private.idempotency_store('reject_milestone', idempotency_key, parameters, answer);
end
$$;

/**
 * The most characters that a refused call of `operation` keeps of its argument `argument`:
 * the limit of the column the accepted call stores it in (a withdrawal approval's reason, the
 * resolution of a processor inconsistency: 2000), else 255.
 */
create or replace function private.refused_call_argument_limit(operation text, argument text)
returns integer
language plpgsql
immutable
set search_path = ''
as $$
begin
  return case operation || '.' || argument
    when 'open_dispute.reason' then 5000
    when 'reject_milestone.reason' then 2000
    when 'resolve_dispute.resolution' then 5000
    when 'approve_withdrawal.reason' then 2000
    when 'resolve_processor_inconsistency.resolution' then 2000
    when 'fail_withdrawal.failure_reason' then 500
    when 'fund_milestone_payment.processor_payment_intent_id' then 255
    when 'complete_withdrawal.processor_payout_id' then 255
    else 255
  end;
end
$$;

/** private.release_lapsed_milestone_payment, with a refusal recorded and answered as above. */
create or replace function public.release_lapsed_milestone_payment(
  milestone_payment_id uuid,
  idempotency_key text
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  error_state text;
  error_message text;
  error_detail text;
  error_hint text;
  refusal jsonb;
begin
  return private.release_lapsed_milestone_payment(milestone_payment_id, idempotency_key);
exception when others then
  get stacked diagnostics error_state = returned_sqlstate, error_message = message_text,
  error_detail = pg_exception_detail, error_hint = pg_exception_hint;
  refusal := private.refused_call(
    'release_lapsed_milestone_payment', 'milestone_payments', milestone_payment_id::text,
    jsonb_build_object('milestone_payment_id', milestone_payment_id),
    error_state, error_message, error_detail, error_hint
  );
  if refusal is null then
    raise;
  end if;
  return refusal;
end
$$;

/** private.submit_milestone, with a refusal recorded and answered as above. */
create or replace function public.submit_milestone(
  milestone_id uuid,
  idempotency_key text
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  error_state text;
  error_message text;
  error_detail text;
  error_hint text;
  refusal jsonb;
begin
  return private.submit_milestone(milestone_id, idempotency_key);
exception when others then
  get stacked diagnostics error_state = returned_sqlstate, error_message = message_text,
  error_detail = pg_exception_detail, error_hint = pg_exception_hint;
  refusal := private.refused_call(
    'submit_milestone', 'project_milestones', milestone_id::text,
    jsonb_build_object('milestone_id', milestone_id),
    error_state, error_message, error_detail, error_hint
  );
  if refusal is null then
    raise;
  end if;
  return refusal;
end
$$;

/** private.reject_milestone, with a refusal recorded and answered as above. */
create or replace function public.reject_milestone(
  milestone_id uuid,
  reason text,
  idempotency_key text
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  error_state text;
  error_message text;
  error_detail text;
  error_hint text;
  refusal jsonb;
begin
  return private.reject_milestone(milestone_id, reason, idempotency_key);
exception when others then
  get stacked diagnostics error_state = returned_sqlstate, error_message = message_text,
  error_detail = pg_exception_detail, error_hint = pg_exception_hint;
  refusal := private.refused_call(
    'reject_milestone', 'project_milestones', milestone_id::text,
    jsonb_build_object('milestone_id', milestone_id, 'reason', reason),
    error_state, error_message, error_detail, error_hint
  );
  if refusal is null then
    raise;
  end if;
  return refusal;
end
$$;

grant execute on function private.release_lapsed_milestone_payment(uuid, text) to authenticated;

grant execute on function private.release_lapsed_milestone_payment(uuid, text) to service_role;

grant execute on function private.reject_milestone(uuid, text, text) to authenticated;

grant execute on function private.reject_milestone(uuid, text, text) to service_role;

grant execute on function private.submit_milestone(uuid, text) to authenticated;

grant execute on function private.submit_milestone(uuid, text) to service_role;

grant execute on function reject_milestone(uuid, text, text) to authenticated;

grant execute on function release_lapsed_milestone_payment(uuid, text) to authenticated;

grant execute on function submit_milestone(uuid, text) to authenticated;
