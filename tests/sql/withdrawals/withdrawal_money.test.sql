-- Withdrawals reserve, then post or void, money in the owner's wallet; released funds wait
-- for the payout hold; large withdrawals need two distinct admins (dual control).
begin;
select plan(24);

-- Its payout methods are new and withdrawn to at once: their cool-down is lifted (the
-- cool-down's own tests: withdrawals/payout_method_cool_down.test.sql).
update private.settings set value = '0' where key = 'payout_method_cool_down_seconds';

-- the backend and staff roles may call pgTAP's assertions (rolled back with the test)
select tests.let_roles_call_pgtap();

-- fixtures, as postgres: carl has 700000 USD in his wallet, and a payout method
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
select tests.create_supabase_user('ada');
select tests.create_supabase_user('abe');
update public.users set role = 'admin' where id in (tests.get_supabase_uid('ada'), tests.get_supabase_uid('abe'));
select set_config('fixture.carl', tests.get_supabase_uid('carl')::text, true);
select set_config('fixture.ada', tests.get_supabase_uid('ada')::text, true);
select set_config('fixture.abe', tests.get_supabase_uid('abe')::text, true);
select set_config('fixture.wallet', private.ledger_wallet(tests.get_supabase_uid('carl'), 'USD')::text, true);
insert into public.payout_methods (id, user_id, type, processor_account_id_lookup, processor_external_account_id_sealed, processor_external_account_id_lookup, currency)
values ('50000000-0000-0000-0000-000000000001', tests.get_supabase_uid('carl'), 'bank_account',
  tests.token_lookup('acct_1Carl01'), tests.sealed_token(), tests.token_lookup('ba_1Carl01'), 'USD');
select tests.fund_wallet(tests.get_supabase_uid('carl'), 700000);

-- as carl at aal2: a small withdrawal reserves, and is approved at once
select tests.authenticate_as('carl', aal => 'aal2');
with requested as (
  insert into public.withdrawals (payout_method_id, amount_minor, currency)
  values ('50000000-0000-0000-0000-000000000001', 100000, 'USD')
  returning id
)
select set_config('fixture.w1', id::text, true) from requested;
select is(
  (select status::text from public.withdrawals where id = current_setting('fixture.w1')::uuid),
  'approved',
  'a withdrawal below the dual-control threshold is approved at once'
);
reset role;
select results_eq(
  format($$select debits_pending, debits_posted from private.ledger_limited_balances where account_id = %L$$,
    current_setting('fixture.wallet')),
  $$values (100000::bigint, 0::bigint)$$,
  'the request reserves the amount in the wallet'
);

-- more than is available
select tests.authenticate_as('carl', aal => 'aal2');
select throws_ok(
  $$insert into public.withdrawals (payout_method_id, amount_minor, currency)
    values ('50000000-0000-0000-0000-000000000001', 600001, 'USD')$$,
  'PT409', 'withdrawal of 600001 USD exceeds the 600000 USD available to withdraw',
  'a withdrawal beyond the available balance is refused'
);

-- a large withdrawal waits for two distinct admins
with requested as (
  insert into public.withdrawals (payout_method_id, amount_minor, currency)
  values ('50000000-0000-0000-0000-000000000001', 500000, 'USD')
  returning id
)
select set_config('fixture.w2', id::text, true) from requested;
select is(
  (select status::text from public.withdrawals where id = current_setting('fixture.w2')::uuid),
  'requested',
  'a withdrawal at the dual-control threshold waits for approval'
);
reset role;
select tests.authenticate_as_service('payment_service');
select throws_ok(
  $$update public.withdrawals set status = 'processing' where id = current_setting('fixture.w2')::uuid$$,
  'PT409', format('withdrawal %s cannot go from requested to processing', current_setting('fixture.w2')),
  'payment_service cannot process it before it is approved'
);
reset role;
select tests.authenticate_as('carl', aal => 'aal2');
select throws_ok(
  $$insert into public.withdrawal_approvals (withdrawal_id) values (current_setting('fixture.w2')::uuid)$$,
  '42501', 'permission denied for table withdrawal_approvals',
  'the owner cannot approve it'
);
reset role;
update public.users set role = 'admin' where id = tests.get_supabase_uid('carl');
select tests.authenticate_as('carl', aal => 'aal2', role_name => 'admin');
select throws_ok(
  $$insert into public.withdrawal_approvals (withdrawal_id) values (current_setting('fixture.w2')::uuid)$$,
  'PT403', 'no one approves their own withdrawal',
  'not even an owner who is an admin'
);
reset role;
update public.users set role = 'contractor' where id = tests.get_supabase_uid('carl');
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select throws_ok(
  format(
    $$insert into public.withdrawal_approvals (withdrawal_id, approved_by)
      values (current_setting('fixture.w2')::uuid, %L)$$,
    current_setting('fixture.abe')
  ),
  '42501', 'permission denied for table withdrawal_approvals',
  'an admin cannot approve in another admin''s name'
);
select lives_ok(
  $$insert into public.withdrawal_approvals (withdrawal_id, reason)
    values (current_setting('fixture.w2')::uuid, 'Matches the released kitchen milestones')$$,
  'a first admin approves'
);
reset role;
select is(
  (select status::text from public.withdrawals where id = current_setting('fixture.w2')::uuid),
  'requested',
  'one approval is not enough'
);
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select throws_ok(
  $$insert into public.withdrawal_approvals (withdrawal_id, reason)
    values (current_setting('fixture.w2')::uuid, 'Approving it once more, to be sure')$$,
  '23505', null,
  'the same admin cannot approve twice'
);
reset role;
select tests.authenticate_as('abe', aal => 'aal2', role_name => 'admin');
select lives_ok(
  $$insert into public.withdrawal_approvals (withdrawal_id, reason)
    values (current_setting('fixture.w2')::uuid, 'Checked the payout account against the contract')$$,
  'a second, distinct admin approves'
);
reset role;
select is(
  (select status::text from public.withdrawals where id = current_setting('fixture.w2')::uuid),
  'approved',
  'two distinct approvals approve the withdrawal'
);

-- payment_service pays one and fails the other
select tests.authenticate_as_service('payment_service');
select lives_ok(
  $$update public.withdrawals set status = 'processing'
    where id in (current_setting('fixture.w1')::uuid, current_setting('fixture.w2')::uuid)$$,
  'payment_service sends both payouts'
);
select throws_ok(
  $$update public.withdrawals set status = 'paid' where id = current_setting('fixture.w1')::uuid$$,
  'PT422', format('withdrawal %s needs the processor''s payout id to be paid', current_setting('fixture.w1')),
  'a withdrawal is paid only with the processor''s payout id'
);
select lives_ok(
  $$update public.withdrawals set status = 'paid', processor_payout_id = 'po_1Carl01'
    where id = current_setting('fixture.w1')::uuid$$,
  'the first payout succeeded'
);
select lives_ok(
  $$update public.withdrawals set status = 'failed', failure_reason = 'account closed'
    where id = current_setting('fixture.w2')::uuid$$,
  'the second payout failed'
);
select throws_ok(
  $$update public.withdrawals set status = 'processing' where id = current_setting('fixture.w2')::uuid$$,
  'PT409', format('withdrawal %s cannot go from failed to processing', current_setting('fixture.w2')),
  'a failed withdrawal is final'
);
reset role;
select results_eq(
  format($$select debits_pending, debits_posted, credits_posted from private.ledger_limited_balances where account_id = %L$$,
    current_setting('fixture.wallet')),
  $$values (0::bigint, 100000::bigint, 700000::bigint)$$,
  'the paid withdrawal was posted and the failed one voided'
);
select is(
  (select count(*)::int from private.ledger_transfers
    where reference_type = 'withdrawal' and kind in ('post_pending', 'void_pending')),
  2,
  'each reservation was resolved once'
);

-- an admin cancels an approved withdrawal, which frees the reservation
select tests.authenticate_as('carl', aal => 'aal2');
with requested as (
  insert into public.withdrawals (payout_method_id, amount_minor, currency)
  values ('50000000-0000-0000-0000-000000000001', 1000, 'USD')
  returning id
)
select set_config('fixture.w3', id::text, true) from requested;
reset role;
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select lives_ok(
  $$update public.withdrawals set status = 'canceled', failure_reason = 'The owner asked us to cancel it'
    where id = current_setting('fixture.w3')::uuid$$,
  'an admin cancels an approved withdrawal, saying why'
);
reset role;
select is(
  (select debits_pending from private.ledger_limited_balances where account_id = current_setting('fixture.wallet')::uuid),
  0::bigint,
  'canceling voids the reservation'
);

-- released funds wait for the payout hold
select tests.create_supabase_user('hana');
select tests.create_project_with_milestones(
  'hana',
  'carl',
  amounts => array[20000],
  titles => array['Deck'],
  project_id => '10000000-0000-0000-0000-000000000001',
  project_title => 'Deck'
);
select tests.set_milestone_payment_status('30000000-0000-0000-0000-000000000001', 'released');
select is(
  private.withdrawable(tests.get_supabase_uid('carl'), 'USD'),
  600000::bigint,
  'the 19000 just released (20000 less the fee) is not withdrawable during the payout hold'
);
update private.settings set value = '0' where key = 'payout_hold_seconds';
select is(
  private.withdrawable(tests.get_supabase_uid('carl'), 'USD'),
  619000::bigint,
  'after the payout hold, it is'
);

select * from finish();
rollback;
