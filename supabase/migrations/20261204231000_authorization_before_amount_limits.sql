-- A stranger learns nothing of a row that is not theirs, not even from a trigger.
--
-- BEFORE triggers fire in name order and before row-level security's WITH CHECK, so a
-- trigger that refuses runs before the policy that would have refused the row as not the
-- caller's. derive_milestone_payment copied any milestone's amount into a stranger's row,
-- and limit_amount then refused it with that amount in the message ("… of 123457 USD would
-- take today's total …", 422) where an id that does not exist got 403: the stranger
-- learned that the milestone exists, and its amount.
--
-- Authorization comes first now. A user's milestone payment is derived from the milestone
-- only when the user owns the milestone; for anyone else's the row stays as the caller
-- sent it, and the policy refuses it as it refuses an unknown id. The amount limits count
-- only a row that the caller is the owner of, by the same tests the insert policies make
-- (the payer of their own milestone, their own payout method, their own payment method);
-- any other row is left to the policy, which refuses it. The velocity limits keep running
-- first: they count the caller's calls whatever the row, and answer the same for any id.

/**
 * BEFORE INSERT trigger on milestone_payments: payee, amount and currency from the
 * milestone (as in 20261126070000_milestone_payment_money.sql), only for a user who owns
 * it. Another user's row is left as sent, for the policy to refuse without the trigger
 * having read the milestone for them.
 */
create or replace function private.derive_milestone_payment() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  milestone record;
begin
  if current_setting('role', true) = 'authenticated'
    and not private.owns_milestone(new.milestone_id) then
    return new;
  end if;
  select m.amount_minor, m.currency, p.contractor_id, p.owner_id, p.id as project_id
  into milestone
  from public.project_milestones as m
  join public.projects as p on p.id = m.project_id
  where m.id = new.milestone_id;
  if not found then
    return new;
  end if;
  if milestone.contractor_id is null then
    if milestone.owner_id is distinct from (select auth.uid()) then
      return new;
    end if;
    raise exception 'milestone % belongs to a project with no contractor to pay',
    new.milestone_id
    using errcode = 'PT422', hint = 'assign the project''s contractor first';
  end if;
  new.payee_id := milestone.contractor_id;
  new.amount_minor := milestone.amount_minor;
  new.currency := milestone.currency;
  new.status := 'pending';
  new.funded_at := null;
  new.released_at := null;
  if new.escrow_account_id is null then
    select e.id into new.escrow_account_id
    from public.escrow_accounts as e
    where e.project_id = milestone.project_id and e.currency = milestone.currency
      and e.status = 'open';
  end if;
  return new;
end
$$;

/**
 * BEFORE INSERT trigger: the amount limits of the operation, for a row of the requesting
 * user's own only. A user's row that names what is not theirs (another's milestone, payout
 * method or payment method) is not counted nor refused here: the insert policies refuse
 * it next, as they refuse an id that does not exist.
 */
create or replace function private.limit_amount() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  owned boolean := true;
begin
  if current_setting('role', true) = 'authenticated' then
    if tg_table_name = 'milestone_payments' then
      owned := new.payer_id is not distinct from (select auth.uid())
        and private.owns_milestone(new.milestone_id);
    elsif tg_table_name = 'withdrawals' then
      owned := new.user_id is not distinct from (select auth.uid())
        and private.owns_payout_method(new.payout_method_id);
    elsif tg_table_name = 'payment_transactions' then
      owned := new.user_id is not distinct from (select auth.uid())
        and (new.payment_method_id is null or private.owns_payment_method(new.payment_method_id));
    end if;
  end if;
  if owned then
    perform private.enforce_amount_limit(
      tg_table_name || '.insert', new.amount_minor, new.currency
    );
  end if;
  return new;
end
$$;

revoke all on function private.derive_milestone_payment() from public;
revoke all on function private.limit_amount() from public;
