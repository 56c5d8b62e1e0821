-- The payment RPCs: thin wrappers over the same statements, with Stripe's idempotency.
begin;
select plan(25);

-- the backend and staff roles may call pgTAP's assertions (rolled back with the test)
select tests.let_roles_call_pgtap();

-- fixtures, as postgres: hana's kitchen, built by carl, with escrow and two milestones
select tests.create_supabase_user('hana');
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
select tests.create_supabase_user('ada');
update public.users set role = 'admin' where id = tests.get_supabase_uid('ada');
update private.settings set value = '0' where key = 'escrow_hold_seconds';
select tests.create_project_with_milestones(
  'hana',
  'carl',
  amounts => array[40000, 30000],
  titles => array['Cabinets', 'Counters'],
  payments => 0,
  project_id => '10000000-0000-0000-0000-000000000001'
);
-- carl has submitted the milestones for review
select tests.submit_milestone(m.id) from public.project_milestones as m;

-- as hana: create a payment, twice with the same key
select tests.authenticate_as('hana');
select set_config(
  'fixture.payment',
  public.create_milestone_payment('20000000-0000-0000-0000-000000000001', 'key-create-1') ->> 'id',
  true
);
select is(
  public.create_milestone_payment('20000000-0000-0000-0000-000000000001', 'key-create-1') ->> 'id',
  current_setting('fixture.payment'),
  'the same key with the same parameters returns the first result'
);
select is(
  (select count(*)::int from public.milestone_payments where milestone_id = '20000000-0000-0000-0000-000000000001'),
  1,
  'and does not pay twice'
);
select throws_ok(
  $$select tests.raise_if_refused(public.create_milestone_payment('20000000-0000-0000-0000-000000000002', 'key-create-1'))$$,
  'PT409', 'idempotency key key-create-1 was already used with other parameters',
  'the same key with other parameters is refused'
);
select throws_ok(
  $$select tests.raise_if_refused(public.create_milestone_payment('20000000-0000-0000-0000-000000000001', ''))$$,
  'PT422', 'an idempotency key of 1 to 255 characters is required',
  'a call without a key is refused'
);
select throws_ok(
  $$select tests.raise_if_refused(public.create_milestone_payment('20000000-0000-0000-0000-000000000001', 'key-create-2'))$$,
  '23505', null,
  'a new key does not pay the same milestone twice either'
);

-- keys belong to their caller
reset role;
select tests.authenticate_as('carl');
select throws_ok(
  $$select tests.raise_if_refused(public.create_milestone_payment('20000000-0000-0000-0000-000000000002', 'key-create-1'))$$,
  '42501', 'new row violates row-level security policy for table "milestone_payments"',
  'another user''s key replays nothing: carl''s call goes through the policies, and fails'
);

-- the RPCs meet the same checks as a direct UPDATE
select throws_ok(
  format($$select tests.raise_if_refused(public.release_milestone_payment(%L, 'key-release-carl'))$$, current_setting('fixture.payment')),
  'PT404', format('no milestone payment %s that you may release', current_setting('fixture.payment')),
  'the payee cannot release through the RPC either'
);
reset role;
select tests.authenticate_as('hana');
select throws_ok(
  format($$select tests.raise_if_refused(public.release_milestone_payment(%L, 'key-release-1'))$$, current_setting('fixture.payment')),
  'PT409',
  format('milestone payment %s cannot go from pending to released', current_setting('fixture.payment')),
  'nor can the payer release a pending payment'
);
select throws_ok(
  format($$select tests.raise_if_refused(public.fund_milestone_payment(%L, 'pi_1Rpc', 40000, 'USD', 'key-fund-hana'))$$, current_setting('fixture.payment')),
  '42501', 'permission denied for function fund_milestone_payment',
  'a user cannot call the service''s RPC'
);

-- payment_service funds it; a retry with the key does not fund twice
reset role;
select tests.authenticate_as_service('payment_service');
select throws_ok(
  format($$select tests.raise_if_refused(public.fund_milestone_payment(%L, 'pi_1Rpc', 39999, 'USD', 'key-fund-0'))$$,
    current_setting('fixture.payment')),
  'PT409',
  format('PaymentIntent pi_1Rpc is for 39999 USD, but milestone payment %s is for 40000 USD',
    current_setting('fixture.payment')),
  'a PaymentIntent for another amount does not fund the payment'
);
select is(
  public.fund_milestone_payment(current_setting('fixture.payment')::uuid, 'pi_1Rpc', 40000, 'USD', 'key-fund-1') ->> 'status',
  'funded',
  'payment_service funds the payment'
);
select is(
  public.fund_milestone_payment(current_setting('fixture.payment')::uuid, 'pi_1Rpc', 40000, 'USD', 'key-fund-1') ->> 'status',
  'funded',
  'a retry with the same key returns the same answer'
);
reset role;
select is(
  (select count(*)::int from private.ledger_transfers
    where reference_id = current_setting('fixture.payment')::uuid and code = 'milestone_funding'),
  1,
  'the retry posted nothing more'
);
select results_eq(
  $$select type::text, status::text, amount_minor from public.payment_transactions
    where processor_transaction_id = 'pi_1Rpc'$$,
  $$values ('charge', 'succeeded', 40000::bigint)$$,
  'funding recorded the processor''s charge once'
);

-- a retry after a failure: the failed call left no key behind
update private.settings set value = '3600' where key = 'escrow_hold_seconds';
select tests.authenticate_as('hana');
select throws_ok(
  format($$select tests.raise_if_refused(public.release_milestone_payment(%L, 'key-release-2'))$$, current_setting('fixture.payment')),
  'PT409', null,
  'a release during the hold period fails'
);
reset role;
update private.settings set value = '0' where key = 'escrow_hold_seconds';
select tests.authenticate_as('hana');
select is(
  public.release_milestone_payment(current_setting('fixture.payment')::uuid, 'key-release-2') ->> 'status',
  'released',
  'the same key succeeds once the cause is gone'
);
reset role;
select is(
  (select count(*)::int from private.ledger_transfers
    where reference_id = current_setting('fixture.payment')::uuid and code = 'milestone_release'),
  1,
  'and the release was posted once'
);

-- a dispute, opened and resolved through the RPCs
insert into public.milestone_payments (id, milestone_id, payer_id)
values ('30000000-0000-0000-0000-000000000002', '20000000-0000-0000-0000-000000000002', tests.get_supabase_uid('hana'));
select tests.set_milestone_payment_status('30000000-0000-0000-0000-000000000002', 'funded');
select tests.authenticate_as('carl');
select set_config(
  'fixture.dispute',
  public.open_dispute('30000000-0000-0000-0000-000000000002', 'Counters cracked', 'key-dispute-1') ->> 'id',
  true
);
reset role;
select is(
  (select status::text from public.milestone_payments where id = '30000000-0000-0000-0000-000000000002'),
  'disputed',
  'the payee opened a dispute through the RPC'
);
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select throws_ok(
  format($$select tests.raise_if_refused(public.resolve_dispute(%L, 'split', 'The payee keeps all of it', 'key-resolve-0', 30000))$$,
    current_setting('fixture.dispute')),
  'PT422',
  'milestone payment 30000000-0000-0000-0000-000000000002 is split only by a dispute resolved with the payee''s share',
  'a split whose share is the whole amount is no split'
);
select is(
  public.resolve_dispute(current_setting('fixture.dispute')::uuid, 'refund', 'Refunded in full', 'key-resolve-1') ->> 'status',
  'resolved',
  'an admin resolves the dispute with a refund'
);
reset role;
select is(
  (select status::text from public.milestone_payments where id = '30000000-0000-0000-0000-000000000002'),
  'refunded',
  'the payment was refunded with it'
);
select is(
  (select balance_minor from public.escrow_accounts where project_id = '10000000-0000-0000-0000-000000000001'),
  0::bigint,
  'the escrow is empty: one payment released, one refunded'
);

-- a split: the payee gets their share less its fee, the rest goes back
insert into public.project_milestones (id, project_id, position, title, amount_minor, currency)
values ('20000000-0000-0000-0000-000000000003', '10000000-0000-0000-0000-000000000001', 3, 'Paint', 20000, 'USD');
insert into public.milestone_payments (id, milestone_id, payer_id)
values ('30000000-0000-0000-0000-000000000003', '20000000-0000-0000-0000-000000000003', tests.get_supabase_uid('hana'));
select tests.set_milestone_payment_status('30000000-0000-0000-0000-000000000003', 'funded');
select tests.authenticate_as('hana');
select set_config(
  'fixture.split_dispute',
  public.open_dispute('30000000-0000-0000-0000-000000000003', 'Half the walls', 'key-dispute-2') ->> 'id',
  true
);
reset role;
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select is(
  public.resolve_dispute(current_setting('fixture.split_dispute')::uuid, 'split', 'Half the walls were done', 'key-resolve-2', 12000)
    ->> 'payee_share_minor',
  '12000',
  'an admin splits the payment: 12000 of 20000 to the payee'
);
reset role;
select results_eq(
  $$select code, amount from private.ledger_transfers
    where reference_id = '30000000-0000-0000-0000-000000000003' order by code$$,
  $$values ('milestone_funding', 20000::bigint), ('milestone_refund', 8000::bigint),
    ('milestone_release', 11400::bigint), ('platform_fee', 600::bigint)$$,
  'the split posted the share less its fee to the payee, the fee, and the rest back'
);
select is(
  (select status::text from public.milestone_payments where id = '30000000-0000-0000-0000-000000000003'),
  'split',
  'the payment is split'
);

select * from finish();
rollback;
