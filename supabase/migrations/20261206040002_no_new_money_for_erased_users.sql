-- No new milestone payment names an erased payer or payee; an erased user's profile stays
-- erased (the policy "Erased profiles stay erased", in the migration before this one).

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
    if actor is not null and private.payment_suspension(actor) is not null then
      raise exception 'the payments of user % are suspended', actor
      using errcode = 'PT403', hint = 'contact support';
    end if;
    -- No new money for an erased user (users_and_projects.sql, the erasure).
    if exists (
      select from public.users as u
      where u.id in (new.payer_id, new.payee_id) and u.erased_at is not null
    ) then
      raise exception 'milestone payment % names an erased user', new.id
      using errcode = 'PT409', hint = 'an erased user is paid and pays nothing new';
    end if;
  elsif old.status = 'funded' and new.status = 'released' then
    if private.payment_suspension(old.payer_id) is not null then
      raise exception 'the payments of user % are suspended', old.payer_id
      using errcode = 'PT403', hint = 'the payment waits until the suspension is lifted';
    end if;
    if actor is not null and private.payment_suspension(actor) is not null then
      raise exception 'the payments of user % are suspended', actor
      using errcode = 'PT403', hint = 'contact support';
    end if;
  end if;
  return new;
end
$$;
