-- A withdrawal's processing facts are set once, by the transition that records them: a
-- second complete (another payout id), a fail after a complete, a complete after a fail, an
-- approval after a complete are refused, while a retry with the same key replays; the
-- payout id, failure reason and processed time are never rewritten; a settled withdrawal
-- and the approvals acted on are never changed or deleted, by any role.
begin;
select plan(39);

-- Its payout methods are new and withdrawn to at once: their cool-down is lifted (the
-- cool-down's own tests: withdrawals/payout_method_cool_down.test.sql).
update private.settings set value = '0' where key = 'payout_method_cool_down_seconds';

-- the backend and staff roles may call pgTAP's assertions (rolled back with the test)
select tests.let_roles_call_pgtap();

-- fixtures, as postgres: carl has 900000 USD and a payout method; ada, abe and ida are admins
update private.settings set value = (
  select jsonb_object_agg(level, jsonb_build_object('calls', 1000, 'seconds', 60))
  from unnest(array['low', 'medium', 'high']) as level
)
where key = 'velocity_limits';
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
select tests.create_supabase_user('ada');
select tests.create_supabase_user('abe');
select tests.create_supabase_user('ida');
update public.users set role = 'admin'
where id in (tests.get_supabase_uid('ada'), tests.get_supabase_uid('abe'), tests.get_supabase_uid('ida'));
insert into public.payout_methods (id, user_id, type, processor_account_id_lookup, processor_external_account_id_sealed, processor_external_account_id_lookup, currency)
values ('c0000000-0000-4000-8000-0000000000d1', tests.get_supabase_uid('carl'), 'bank_account',
  tests.token_lookup('acct_1Carl01'), tests.sealed_token(), tests.token_lookup('ba_1Carl01'), 'USD');
select tests.fund_wallet(tests.get_supabase_uid('carl'), 900000);
-- w1 to w4 are small (approved at once); w5 is large and waits for two admins
insert into public.withdrawals (id, user_id, payout_method_id, amount_minor, currency)
select format('d0000000-0000-4000-8000-00000000000%s', n)::uuid, tests.get_supabase_uid('carl'),
  'c0000000-0000-4000-8000-0000000000d1', case when n = 5 then 600000 else 10000 end, 'USD'
from generate_series(1, 5) as n;

-- as payment_service: a payout completes once
select tests.authenticate_as_service('payment_service');
select results_eq(
  $$select a ->> 'status', a ->> 'processor_payout_id', (a ->> 'processed_at')::timestamptz = now()
    from tests.raise_if_refused(public.complete_withdrawal(
      'd0000000-0000-4000-8000-000000000001', 'po_W1first', 'complete-1')) as a$$,
  $$values ('paid', 'po_W1first', true)$$,
  'payment_service completes w1 with its payout id; the database records when'
);
select throws_ok(
  $$select tests.raise_if_refused(public.complete_withdrawal(
    'd0000000-0000-4000-8000-000000000001', 'po_W1second', 'complete-2'))$$,
  'PT409', 'withdrawal d0000000-0000-4000-8000-000000000001 is paid: a settled withdrawal never changes',
  'a second complete with another payout id is refused'
);
select throws_ok(
  $$select tests.raise_if_refused(public.complete_withdrawal(
    'd0000000-0000-4000-8000-000000000001', 'po_W1first', 'complete-3'))$$,
  'PT409', 'withdrawal d0000000-0000-4000-8000-000000000001 is paid: a settled withdrawal never changes',
  'and so is a second complete with the same payout id under a new key'
);
select is(
  tests.raise_if_refused(public.complete_withdrawal(
    'd0000000-0000-4000-8000-000000000001', 'po_W1first', 'complete-1')) ->> 'processor_payout_id',
  'po_W1first',
  'while a retry with the first key replays the first answer'
);
select throws_ok(
  $$select tests.raise_if_refused(public.complete_withdrawal(
    'd0000000-0000-4000-8000-000000000001', 'po_W1second', 'complete-1'))$$,
  'PT409', 'idempotency key complete-1 was already used with other parameters',
  'and the first key with another payout id is refused'
);
select throws_ok(
  $$select tests.raise_if_refused(public.fail_withdrawal(
    'd0000000-0000-4000-8000-000000000001', 'The bank refused it', 'fail-1'))$$,
  'PT409', 'withdrawal d0000000-0000-4000-8000-000000000001 cannot go from paid to failed',
  'a paid withdrawal cannot fail afterwards'
);
select is(
  tests.raise_if_refused(public.fail_withdrawal(
    'd0000000-0000-4000-8000-000000000002', 'The account is closed', 'fail-2')) ->> 'status',
  'failed',
  'payment_service fails w2'
);
select throws_ok(
  $$select tests.raise_if_refused(public.complete_withdrawal(
    'd0000000-0000-4000-8000-000000000002', 'po_W2late', 'complete-4'))$$,
  'PT409', 'withdrawal d0000000-0000-4000-8000-000000000002 cannot go from failed to paid',
  'a failed withdrawal cannot be completed afterwards'
);
select throws_ok(
  $$select tests.raise_if_refused(public.fail_withdrawal(
    'd0000000-0000-4000-8000-000000000002', 'Another reason', 'fail-3'))$$,
  'PT409', 'withdrawal d0000000-0000-4000-8000-000000000002 is failed: a settled withdrawal never changes',
  'nor failed again with another reason'
);

-- as payment_service, by PATCH: the same rules
select throws_ok(
  $$update public.withdrawals set processor_payout_id = 'po_W1second'
    where id = 'd0000000-0000-4000-8000-000000000001'$$,
  'PT409', 'withdrawal d0000000-0000-4000-8000-000000000001 is paid: a settled withdrawal never changes',
  'payment_service cannot rewrite the payout id of a paid withdrawal'
);
select throws_ok(
  $$update public.withdrawals set processed_at = now() - interval '1 day'
    where id = 'd0000000-0000-4000-8000-000000000001'$$,
  '42501', 'permission denied for table withdrawals',
  'nor its processed time'
);
select throws_ok(
  $$update public.withdrawals set processor_payout_id = 'po_W4early'
    where id = 'd0000000-0000-4000-8000-000000000004'$$,
  'PT409',
  'withdrawal d0000000-0000-4000-8000-000000000004: the processor''s payout id is set once, when the payout is sent or paid',
  'nor set a payout id without sending the payout'
);
select throws_ok(
  $$update public.withdrawals set failure_reason = 'Failed, it seems'
    where id = 'd0000000-0000-4000-8000-000000000004'$$,
  'PT409',
  'withdrawal d0000000-0000-4000-8000-000000000004: the failure reason is recorded once, when it fails or is canceled',
  'nor write a failure reason on a withdrawal that did not fail'
);
select lives_ok(
  $$update public.withdrawals set status = 'processing', processor_payout_id = 'po_W3sent'
    where id = 'd0000000-0000-4000-8000-000000000003'$$,
  'payment_service sends w3''s payout and records its payout id'
);
select throws_ok(
  $$update public.withdrawals set status = 'paid', processor_payout_id = 'po_W3other'
    where id = 'd0000000-0000-4000-8000-000000000003'$$,
  'PT409',
  'withdrawal d0000000-0000-4000-8000-000000000003: the processor''s payout id is set once, when the payout is sent or paid',
  'it cannot mark it paid under another payout id'
);
select results_eq(
  $$with paid as (
      update public.withdrawals set status = 'paid'
      where id = 'd0000000-0000-4000-8000-000000000003'
      returning processor_payout_id, processed_at = now()
    ) select * from paid$$,
  $$values ('po_W3sent', true)$$,
  'it marks it paid under the payout id it recorded'
);

-- as an admin: nothing of a settled withdrawal; a move they may never make is refused as such
reset role;
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select throws_ok(
  $$update public.withdrawals set failure_reason = 'Rewritten'
    where id = 'd0000000-0000-4000-8000-000000000001'$$,
  'PT409', 'withdrawal d0000000-0000-4000-8000-000000000001 is paid: a settled withdrawal never changes',
  'admin cannot write a failure reason on a paid withdrawal'
);
select throws_ok(
  $$update public.withdrawals set status = 'canceled'
    where id = 'd0000000-0000-4000-8000-000000000003'$$,
  'PT409', 'withdrawal d0000000-0000-4000-8000-000000000003 cannot go from paid to canceled',
  'nor cancel it'
);
select throws_ok(
  $$update public.withdrawals set status = 'processing'
    where id = 'd0000000-0000-4000-8000-000000000002'$$,
  'PT403', 'withdrawal d0000000-0000-4000-8000-000000000002 cannot be moved from failed to processing by admin',
  'a move only payment_service makes is refused to admin before its legality is weighed'
);
select results_eq(
  $$with canceled as (
      update public.withdrawals set status = 'canceled', failure_reason = 'The owner asked to cancel'
      where id = 'd0000000-0000-4000-8000-000000000004'
      returning failure_reason, processed_at = now()
    ) select * from canceled$$,
  $$values ('The owner asked to cancel', true)$$,
  'admin cancels an approved withdrawal with a reason; the database records when'
);

-- two admins approve w5, with their reasons; payment_service completes it
reset role;
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select is(
  tests.raise_if_refused(public.approve_withdrawal(
    'd0000000-0000-4000-8000-000000000005', 'Matches the kitchen milestones paid', 'approve-1'
  )) ->> 'reason',
  'Matches the kitchen milestones paid',
  'a first admin approves w5 with her reason'
);
reset role;
select tests.authenticate_as('abe', aal => 'aal2', role_name => 'admin');
select is(
  tests.raise_if_refused(public.approve_withdrawal(
    'd0000000-0000-4000-8000-000000000005', 'Payout account verified by phone', 'approve-2'
  )) ->> 'reason',
  'Payout account verified by phone',
  'a second admin approves it with his'
);
reset role;
select tests.authenticate_as_service('payment_service');
select is(
  tests.raise_if_refused(public.complete_withdrawal(
    'd0000000-0000-4000-8000-000000000005', 'po_W5paid', 'complete-5')) ->> 'status',
  'paid',
  'payment_service completes the approved withdrawal'
);
reset role;
select tests.authenticate_as('ida', aal => 'aal2', role_name => 'admin');
select throws_ok(
  $$select tests.raise_if_refused(public.approve_withdrawal(
    'd0000000-0000-4000-8000-000000000005', 'Approving after the fact', 'approve-3'))$$,
  'PT409', 'withdrawal d0000000-0000-4000-8000-000000000005 is not waiting for approval',
  'an approval after the withdrawal was paid is refused'
);

-- as the owner of the tables: the same rules
reset role;
select throws_ok(
  $$update public.withdrawals set processor_payout_id = 'po_W1owner'
    where id = 'd0000000-0000-4000-8000-000000000001'$$,
  'PT409', 'withdrawal d0000000-0000-4000-8000-000000000001 is paid: a settled withdrawal never changes',
  'the owner of the tables cannot rewrite a paid withdrawal'
);
select throws_ok(
  $$update public.withdrawals set processed_at = now() - interval '1 day'
    where id = 'd0000000-0000-4000-8000-000000000004'$$,
  'PT409', 'withdrawal d0000000-0000-4000-8000-000000000004 is canceled: a settled withdrawal never changes',
  'nor the time a canceled one was processed'
);
select throws_ok(
  $$delete from public.withdrawals where id = 'd0000000-0000-4000-8000-000000000001'$$,
  'PT409', 'withdrawal d0000000-0000-4000-8000-000000000001 is paid: a settled withdrawal is never deleted',
  'nor delete a paid withdrawal'
);
select throws_ok(
  $$delete from public.withdrawals where id = 'd0000000-0000-4000-8000-000000000002'$$,
  'PT409', 'withdrawal d0000000-0000-4000-8000-000000000002 is failed: a settled withdrawal is never deleted',
  'nor a failed one'
);
select throws_ok(
  format(
    $$update public.withdrawal_approvals set reason = 'Rewritten afterwards' where approved_by = %L$$,
    tests.get_supabase_uid('ada')
  ),
  'PT409',
  format(
    'approval %s of withdrawal d0000000-0000-4000-8000-000000000005 was acted on: it never changes',
    (select id from public.withdrawal_approvals where approved_by = tests.get_supabase_uid('ada'))
  ),
  'nor rewrite the reason of an approval acted on'
);
select throws_ok(
  format(
    $$delete from public.withdrawal_approvals where approved_by = %L$$,
    tests.get_supabase_uid('abe')
  ),
  'PT409',
  format(
    'approval %s of withdrawal d0000000-0000-4000-8000-000000000005 was acted on: it never changes',
    (select id from public.withdrawal_approvals where approved_by = tests.get_supabase_uid('abe'))
  ),
  'nor delete it'
);
-- a withdrawal still waiting (the day's total is over the threshold) takes no processed time
-- from anyone
insert into public.withdrawals (id, user_id, payout_method_id, amount_minor, currency)
values ('d0000000-0000-4000-8000-000000000006', tests.get_supabase_uid('carl'),
  'c0000000-0000-4000-8000-0000000000d1', 10000, 'USD');
select throws_ok(
  $$update public.withdrawals set processed_at = now()
    where id = 'd0000000-0000-4000-8000-000000000006'$$,
  'PT409',
  'withdrawal d0000000-0000-4000-8000-000000000006: the time it was processed is the database''s to record',
  'the owner of the tables cannot write when a waiting withdrawal was processed'
);

-- what stands: each withdrawal as it was settled, each reservation resolved once
select results_eq(
  $$select id::text, status::text, processor_payout_id, failure_reason, processed_at is not null
    from public.withdrawals where user_id = tests.get_supabase_uid('carl') order by id$$,
  $$values
    ('d0000000-0000-4000-8000-000000000001', 'paid', 'po_W1first', null::text, true),
    ('d0000000-0000-4000-8000-000000000002', 'failed', null, 'The account is closed', true),
    ('d0000000-0000-4000-8000-000000000003', 'paid', 'po_W3sent', null, true),
    ('d0000000-0000-4000-8000-000000000004', 'canceled', null, 'The owner asked to cancel', true),
    ('d0000000-0000-4000-8000-000000000005', 'paid', 'po_W5paid', null, true),
    ('d0000000-0000-4000-8000-000000000006', 'requested', null, null, false)$$,
  'every settled withdrawal kept the facts of its settlement'
);
select results_eq(
  $$select w.id::text, string_agg(t.kind::text, ',' order by t.kind::text)
    from public.withdrawals as w
    join private.ledger_transfers as t on t.reference_type = 'withdrawal' and t.reference_id = w.id
    where w.user_id = tests.get_supabase_uid('carl')
    group by w.id order by w.id$$,
  $$values
    ('d0000000-0000-4000-8000-000000000001', 'pending,post_pending'),
    ('d0000000-0000-4000-8000-000000000002', 'pending,void_pending'),
    ('d0000000-0000-4000-8000-000000000003', 'pending,post_pending'),
    ('d0000000-0000-4000-8000-000000000004', 'pending,void_pending'),
    ('d0000000-0000-4000-8000-000000000005', 'pending,post_pending'),
    ('d0000000-0000-4000-8000-000000000006', 'pending')$$,
  'each reservation was posted or voided once, as its withdrawal was settled'
);

-- who comes first: a user is refused the RPCs outright, for a withdrawal that exists (even
-- their own) as for one that does not
select tests.authenticate_as('carl', aal => 'aal2');
select throws_ok(
  $$select tests.raise_if_refused(public.complete_withdrawal(
    'd0000000-0000-4000-8000-000000000006', 'po_W6mine', 'user-1'))$$,
  '42501', 'permission denied for function complete_withdrawal',
  'the owner cannot complete his own withdrawal'
);
select throws_ok(
  $$select tests.raise_if_refused(public.complete_withdrawal(
    'd0000000-0000-4000-8000-0000000000ff', 'po_W6mine', 'user-2'))$$,
  '42501', 'permission denied for function complete_withdrawal',
  'exactly as a withdrawal that does not exist'
);
select throws_ok(
  $$select tests.raise_if_refused(public.fail_withdrawal(
    'd0000000-0000-4000-8000-000000000001', 'Undo it, please', 'user-3'))$$,
  '42501', 'permission denied for function fail_withdrawal',
  'nor fail his paid withdrawal'
);
select throws_ok(
  $$select tests.raise_if_refused(public.approve_withdrawal(
    'd0000000-0000-4000-8000-000000000006', 'I approve of myself', 'user-4'))$$,
  '42501', 'permission denied for function approve_withdrawal',
  'nor approve his own withdrawal'
);
select throws_ok(
  $$select tests.raise_if_refused(public.approve_withdrawal(
    'd0000000-0000-4000-8000-0000000000ff', 'I approve of myself', 'user-5'))$$,
  '42501', 'permission denied for function approve_withdrawal',
  'exactly as a withdrawal that does not exist'
);
select throws_ok(
  $$update public.withdrawals set processor_payout_id = 'po_W6mine'
    where id = 'd0000000-0000-4000-8000-000000000006'$$,
  '42501', 'permission denied for table withdrawals',
  'nor write its payout id himself'
);

select * from finish();
rollback;
