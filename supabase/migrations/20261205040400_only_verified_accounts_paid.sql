-- Money goes only to a connected account the processor verified.
--
-- A payout method counted as payable unless the processor had said `pending` or
-- `restricted`: a method never verified (`unverified`, the state of every new method and of
-- one whose account.updated never came) was listed by withdrawals_to_pay_out and could be
-- sent a transfer. The class is "the absence of the processor's word taken as its yes". Now a
-- payout method is payable only while its owner's recorded connected account
-- (processor_accounts) is `verified`, which withdrawals_to_pay_out and
-- record_withdrawal_transfer both ask.

/**
 * Whether the processor may pay out to `payout_method`: its connected account is recorded as
 * its owner's and verified. Security definer: the caller need not read the account.
 */
create or replace function private.payout_method_payable(payout_method uuid) returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select exists (
    select from public.payout_methods as pm
    join public.processor_accounts as a
      on a.processor_account_id = pm.processor_account_id and a.user_id = pm.user_id
    where pm.id = payout_method and a.verification_status = 'verified'
  )
$$;
