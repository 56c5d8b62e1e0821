-- The life of a milestone payment, held by a trigger: a policy cannot see the old row, so
-- it cannot tell a legal change of status from an illegal one (brief §4).
--
--   pending  -> funded     payment_service, with the processor's PaymentIntent id
--   pending  -> canceled   the payer
--   funded   -> released   the payer, when no dispute is open
--   funded   -> disputed   the payer or the payee (a payee does it by opening a dispute)
--   disputed -> released   admin or escrow_service
--   disputed -> refunded   admin or escrow_service
--
-- Nothing else is legal, and no one, service roles included, changes what was agreed: the
-- milestone, payer, payee, amount and currency; nor, once set, the PaymentIntent and the
-- escrow account.

/**
 * Who is asking, for the transition rules: a service or staff role by its database role
 * (`requester`, the caller's current_user), else the payer or payee by the request's user id.
 * Null for anyone else. Security definer because the service roles cannot read `auth`.
 */
create function private.milestone_payment_actor(
  payment public.milestone_payments, requester name
) returns text
language sql
stable
security definer
set search_path = ''
as $$
  select case
    when requester in ('payment_service', 'escrow_service', 'admin') then requester::text
    when (select auth.uid()) = payment.payer_id then 'payer'
    when (select auth.uid()) = payment.payee_id then 'payee'
  end
$$;

/** BEFORE UPDATE trigger on milestone_payments: the transition rules above. */
create function private.check_milestone_payment_transition() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  actor text := private.milestone_payment_actor(old, current_user);
  allowed text[];
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
    when 'pending>canceled' then array['payer']
    when 'funded>released' then array['payer']
    when 'funded>disputed' then array['payer', 'payee']
    when 'disputed>released' then array['admin', 'escrow_service']
    when 'disputed>refunded' then array['admin', 'escrow_service']
  end;
  if allowed is null then
    raise exception 'milestone payment % cannot go from % to %', old.id, old.status, new.status
    using errcode = 'PT409';
  end if;
  if actor is null or not actor = any(allowed) then
    raise exception 'only the % may move milestone payment % from % to %',
    array_to_string(allowed, ' or '), old.id, old.status, new.status
    using errcode = 'PT403';
  end if;

  if new.status = 'funded' then
    if new.processor_payment_intent_id is null then
      raise exception 'milestone payment % needs the processor''s PaymentIntent id to be funded',
      old.id
      using errcode = 'PT422';
    end if;
    new.funded_at := now();
  elsif new.status = 'released' then
    if old.status = 'funded' and private.has_open_dispute(old.id) then
      raise exception 'milestone payment % has an open dispute and cannot be released', old.id
      using errcode = 'PT409';
    end if;
    new.released_at := now();
  end if;
  return new;
end
$$;

revoke all on function private.milestone_payment_actor(public.milestone_payments, name)
from public;
revoke all on function private.check_milestone_payment_transition() from public;
grant execute on function private.milestone_payment_actor(public.milestone_payments, name)
to authenticated, payment_service, escrow_service, admin;
grant execute on function private.has_open_dispute(uuid)
to authenticated, payment_service, escrow_service, admin;

create trigger check_milestone_payment_transition
before update on public.milestone_payments
for each row execute function private.check_milestone_payment_transition();
