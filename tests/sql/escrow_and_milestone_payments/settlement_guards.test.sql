-- Who may settle, and when: no party settles its own dispute, frozen escrow holds, dual
-- control counts the day and the approvals, derived fields stay derived, a late charge
-- is kept.
begin;
select plan(15);

-- Its payout methods are new and withdrawn to at once: their cool-down is lifted (the
-- cool-down's own tests: withdrawals/payout_method_cool_down.test.sql).
update private.settings set value = '0' where key = 'payout_method_cool_down_seconds';

-- the backend and staff roles may call pgTAP's assertions (rolled back with the test)
select tests.let_roles_call_pgtap();

-- fixtures, as postgres: hana pays carl, who is also an admin
update private.settings set value = '0' where key = 'escrow_hold_seconds';
update private.settings set value = '{"time_zone": "UTC", "from": 0, "to": 24}'
where key = 'business_hours';
select tests.create_supabase_user('hana');
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
select tests.create_supabase_user('ada');
update public.users set role = 'admin' where id in (tests.get_supabase_uid('ada'), tests.get_supabase_uid('carl'));
select tests.create_project_with_milestones(
  'hana',
  'carl',
  amounts => array_fill(40000::bigint, array[4]),
  payments => 3,
  project_id => '10000000-0000-0000-0000-000000000001',
  escrow_id => '40000000-0000-0000-0000-000000000001'
);
select tests.set_milestone_payment_status('30000000-0000-0000-0000-000000000001', 'disputed');
select tests.set_milestone_payment_status('30000000-0000-0000-0000-000000000002', 'funded');
insert into public.disputes (id, milestone_payment_id, opened_by, reason)
values ('50000000-0000-0000-0000-000000000001', '30000000-0000-0000-0000-000000000001',
  tests.get_supabase_uid('carl'), 'Pay me');

-- an admin who is a party settles nothing of their own
select tests.authenticate_as('carl', aal => 'aal2', role_name => 'admin');
select throws_ok(
  $$select tests.raise_if_refused(public.resolve_dispute('50000000-0000-0000-0000-000000000001', 'release', 'mine', 'k1'))$$,
  'PT403',
  'a party to milestone payment 30000000-0000-0000-0000-000000000001 cannot resolve its dispute',
  'the payee, though an admin, cannot resolve a dispute over their own payment'
);
select throws_ok(
  $$update public.milestone_payments set status = 'released'
    where id = '30000000-0000-0000-0000-000000000001'$$,
  'PT403', 'a party to milestone payment 30000000-0000-0000-0000-000000000001 cannot settle it',
  'nor release the disputed payment directly'
);
reset role;
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select lives_ok(
  $$select tests.raise_if_refused(public.resolve_dispute('50000000-0000-0000-0000-000000000001', 'release', 'The work was done as agreed', 'k2'))$$,
  'another admin resolves it'
);
reset role;

-- escrow_service settles a disputed payment directly: its dispute is closed with it
insert into public.project_milestones (id, project_id, position, title, amount_minor, currency)
values ('20000000-0000-0000-0000-000000000009', '10000000-0000-0000-0000-000000000001', 9, 'Trim', 1000, 'USD');
insert into public.milestone_payments (id, milestone_id, payer_id)
values ('30000000-0000-0000-0000-000000000009', '20000000-0000-0000-0000-000000000009', tests.get_supabase_uid('hana'));
select tests.set_milestone_payment_status('30000000-0000-0000-0000-000000000009', 'funded');
select tests.authenticate_as('hana');
insert into public.disputes (milestone_payment_id, reason)
values ('30000000-0000-0000-0000-000000000009', 'Wrong color');
reset role;
select tests.authenticate_as_service('escrow_service');
-- the decision's written reason goes on the dispute first
update public.disputes set resolution = 'Trim painted in the wrong colour'
where milestone_payment_id = '30000000-0000-0000-0000-000000000009' and status = 'open';
select lives_ok(
  $$update public.milestone_payments set status = 'refunded'
    where id = '30000000-0000-0000-0000-000000000009'$$,
  'escrow_service refunds a disputed payment directly'
);
reset role;
select results_eq(
  $$select status::text, outcome::text, resolution from public.disputes
    where milestone_payment_id = '30000000-0000-0000-0000-000000000009'$$,
  $$values ('resolved', 'refund', 'Trim painted in the wrong colour')$$,
  'and its dispute is closed with the same outcome and its written reason'
);

-- a frozen escrow holds its funds
update public.escrow_accounts set status = 'frozen' where id = '40000000-0000-0000-0000-000000000001';
select tests.authenticate_as('hana');
select throws_ok(
  $$update public.milestone_payments set status = 'released'
    where id = '30000000-0000-0000-0000-000000000002'$$,
  'PT409', 'the escrow account of milestone payment 30000000-0000-0000-0000-000000000002 is frozen',
  'a payer cannot release from a frozen escrow'
);
reset role;
select tests.authenticate_as_service('payment_service');
select throws_ok(
  $$select tests.raise_if_refused(public.fund_milestone_payment('30000000-0000-0000-0000-000000000003', 'pi_1Frozen', 40000, 'USD', 'kf'))$$,
  'PT409',
  'milestone payment 30000000-0000-0000-0000-000000000003 has no open escrow account in USD to be funded into',
  'nothing is funded into a frozen escrow'
);
select throws_ok(
  $$update public.milestone_payments set escrow_account_id = '40000000-0000-0000-0000-000000000001'
    where id = '30000000-0000-0000-0000-000000000003'$$,
  '42501', 'permission denied for table milestone_payments',
  'payment_service cannot choose the escrow a payment goes into'
);
reset role;
update public.escrow_accounts set status = 'open' where id = '40000000-0000-0000-0000-000000000001';

-- a charge for a payment canceled meanwhile is kept on record, and moves nothing
select tests.authenticate_as('hana');
select public.cancel_milestone_payment('30000000-0000-0000-0000-000000000003', 'kc');
reset role;
select tests.authenticate_as_service('payment_service');
select is(
  public.fund_milestone_payment('30000000-0000-0000-0000-000000000003', 'pi_1Late', 40000, 'USD', 'kl')
    ->> 'status',
  'canceled',
  'funding a canceled payment leaves it canceled'
);
reset role;
select results_eq(
  $$select status::text, amount_minor from public.payment_transactions
    where processor_transaction_id = 'pi_1Late'$$,
  $$values ('succeeded', 40000::bigint)$$,
  'but the processor''s charge is on record, for a refund'
);
select is(
  (select count(*)::int from private.ledger_transfers
    where reference_id = '30000000-0000-0000-0000-000000000003'),
  0,
  'and no money moved'
);

-- dual control counts the day, and the approvals
insert into public.payout_methods (id, user_id, type, processor_account_id_lookup, processor_external_account_id_sealed, processor_external_account_id_lookup, currency)
values ('60000000-0000-0000-0000-000000000001', tests.get_supabase_uid('carl'), 'bank_account',
  tests.token_lookup('acct_1Carl01'), tests.sealed_token(), tests.token_lookup('ba_1Carl01'), 'USD');
select tests.fund_wallet(tests.get_supabase_uid('carl'), 900000);
update private.settings
set value = jsonb_set(value, '{withdrawals.insert}', '{"per_operation": 900000, "per_day": 900000}')
where key = 'amount_limits';
select tests.authenticate_as('carl', aal => 'aal2');
select is(
  public.request_withdrawal('60000000-0000-0000-0000-000000000001', 300000, 'USD', 'w1') ->> 'status',
  'approved',
  'a first withdrawal below the threshold is approved at once'
);
select set_config(
  'fixture.second',
  public.request_withdrawal('60000000-0000-0000-0000-000000000001', 300000, 'USD', 'w2') ->> 'id',
  true
);
select is(
  (select status::text from public.withdrawals where id = current_setting('fixture.second')::uuid),
  'requested',
  'a second one that takes the day over the threshold waits for two admins'
);
reset role;
select throws_ok(
  format($$update public.withdrawals set status = 'approved' where id = %L$$, current_setting('fixture.second')),
  'PT403', format('withdrawal %s needs two distinct admins'' approval', current_setting('fixture.second')),
  'not even the owner of the tables approves without two approvals'
);
select is(
  (select status::text from public.withdrawals where id = current_setting('fixture.second')::uuid),
  'requested',
  'the withdrawal still waits'
);

select * from finish();
rollback;
