-- A refused approve_withdrawal keeps at most what an accepted one could have stored of its
-- written reason.
--
-- approve_withdrawal took a reason argument (20261204232200_withdrawal_approval_reason)
-- after the bounds of refused calls' arguments were set (20261204231100), so its reason fell
-- to the default bound of 255 characters. withdrawal_approvals.reason takes up to 2,000
-- characters: a refused call keeps that much, and a marker with the length and SHA-256 past
-- it, as for every other argument.

/**
 * The most characters that a refused call of `operation` keeps of its argument `argument`:
 * the limit of the column the accepted call stores it in, else 255.
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
    when 'resolve_dispute.resolution' then 5000
    when 'approve_withdrawal.reason' then 2000
    when 'fail_withdrawal.failure_reason' then 500
    when 'fund_milestone_payment.processor_payment_intent_id' then 255
    when 'complete_withdrawal.processor_payout_id' then 255
    else 255
  end;
end
$$;
