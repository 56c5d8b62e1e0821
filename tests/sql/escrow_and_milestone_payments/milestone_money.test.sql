-- The milestone payment transitions move money: funding into escrow, release to the payee
-- less the platform fee, refund back to clearing; holds and fees are the server's.
begin;
select plan(23);

-- the backend and staff roles may call pgTAP's assertions (rolled back with the test)
select tests.let_roles_call_pgtap();

-- fixtures, as postgres: hana pays carl for two milestones of her kitchen
select tests.create_supabase_user('hana');
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
select tests.create_project_with_milestones(
  'hana',
  'carl',
  amounts => array[50001, 30000, 20000, 10000],
  titles => array['Cabinets', 'Counters', 'Lights', 'Paint'],
  escrow => false,
  project_id => '10000000-0000-0000-0000-000000000001'
);
-- carl has submitted the milestones for review
select tests.submit_milestone(m.id) from public.project_milestones as m;

-- funding needs an escrow account
select tests.authenticate_as_service('payment_service');
select throws_ok(
  $$update public.milestone_payments set status = 'funded', processor_payment_intent_id = 'pi_1Aa'
    where id = '30000000-0000-0000-0000-000000000001'$$,
  'PT409',
  'milestone payment 30000000-0000-0000-0000-000000000001 has no open escrow account in USD to be funded into',
  'a payment cannot be funded before its project has an escrow account'
);
reset role;
insert into public.escrow_accounts (id, user_id, project_id, currency)
values ('40000000-0000-0000-0000-000000000001', tests.get_supabase_uid('hana'),
  '10000000-0000-0000-0000-000000000001', 'USD');

-- pending -> funded: clearing -> escrow
select tests.authenticate_as_service('payment_service');
select lives_ok(
  $$update public.milestone_payments set status = 'funded', processor_payment_intent_id = 'pi_1Aa'
    where id = '30000000-0000-0000-0000-000000000001'$$,
  'payment_service funds the payment'
);
select lives_ok(
  $$update public.milestone_payments
    set status = 'funded', processor_payment_intent_id = 'pi_' || right(id::text, 1) || 'Bb'
    where id in ('30000000-0000-0000-0000-000000000002', '30000000-0000-0000-0000-000000000003')$$,
  'and two more'
);
select throws_ok(
  $$update public.milestone_payments set status = 'funded', processor_payment_intent_id = 'pi_1Aa'
    where id = '30000000-0000-0000-0000-000000000004'$$,
  '23505',
  'duplicate key value violates unique constraint "milestone_payments_processor_payment_intent_id_key"',
  'a processor transaction funds one payment only'
);
reset role;
select is(
  (select escrow_account_id from public.milestone_payments where id = '30000000-0000-0000-0000-000000000001'),
  '40000000-0000-0000-0000-000000000001'::uuid,
  'the payment is tied to the project''s escrow account'
);
select is(
  (select balance_minor from public.escrow_accounts where id = '40000000-0000-0000-0000-000000000001'),
  100001::bigint,
  'the escrow holds the three amounts'
);
select results_eq(
  $$select code, amount from private.ledger_transfers
    where reference_id = '30000000-0000-0000-0000-000000000001'$$,
  $$values ('milestone_funding', 50001::bigint)$$,
  'funding posted one transfer of the amount'
);
select results_eq(
  $$select credits_posted, debits_posted from private.ledger_limited_balances
    where kind = 'user_wallet' and user_id = tests.get_supabase_uid('carl')$$,
  $$values (0::bigint, 0::bigint)$$,
  'funding opened the payee''s wallet, still empty'
);
select tests.authenticate_as_service('payment_service');
select throws_ok(
  $$update public.milestone_payments set processor_payment_intent_id = 'pi_9Zz'
    where id = '30000000-0000-0000-0000-000000000002'$$,
  'PT409',
  'milestone payment 30000000-0000-0000-0000-000000000002: its PaymentIntent id never changes once set',
  'the processor transaction of a funded payment never changes'
);
reset role;

-- the hold period
update private.settings set value = '3600' where key = 'escrow_hold_seconds';
select tests.authenticate_as('hana');
select throws_ok(
  $$update public.milestone_payments set status = 'released'
    where id = '30000000-0000-0000-0000-000000000001'$$,
  'PT409', null,
  'funds cannot be released during the hold period'
);
select is(
  (select balance_minor from public.escrow_accounts where id = '40000000-0000-0000-0000-000000000001'),
  100001::bigint,
  'a refused release moved nothing'
);
reset role;
update private.settings set value = '0' where key = 'escrow_hold_seconds';

-- funded -> released: escrow -> payee, less the fee (5% of 50001 = 2500.05, rounded: 2500)
select set_config(
  'fixture.wallets',
  (select count(*)::text from private.ledger_accounts where kind = 'user_wallet'), true
);
select tests.authenticate_as('hana');
select lives_ok(
  $$update public.milestone_payments set status = 'released'
    where id = '30000000-0000-0000-0000-000000000001'$$,
  'the payer releases the payment after the hold period'
);
reset role;
select is(
  (select count(*)::text from private.ledger_accounts where kind = 'user_wallet'),
  current_setting('fixture.wallets'),
  'the release opened no wallet: the payee''s was opened at funding'
);
select is(private.platform_fee(50001, 'USD'), 2500::bigint, 'the fee is 5%, rounded half up');
select is(private.platform_fee(50010, 'USD'), 2501::bigint, 'half a unit rounds up');
select results_eq(
  $$select code, amount from private.ledger_transfers
    where reference_id = '30000000-0000-0000-0000-000000000001' order by code$$,
  $$values ('milestone_funding', 50001::bigint), ('milestone_release', 47501::bigint),
    ('platform_fee', 2500::bigint)$$,
  'release posted the amount less the fee to the payee, and the fee to the platform'
);
select is(
  (select credits_posted - debits_posted from private.ledger_limited_balances
    where account_id = private.ledger_wallet(tests.get_supabase_uid('carl'), 'USD')),
  47501::bigint,
  'the payee''s wallet holds the amount less the fee'
);
select is(
  (select balance_minor from public.escrow_accounts where id = '40000000-0000-0000-0000-000000000001'),
  50000::bigint,
  'the escrow holds what is still funded'
);

-- funded -> disputed -> refunded: escrow -> clearing
select tests.authenticate_as('carl');
insert into public.disputes (milestone_payment_id, reason)
values ('30000000-0000-0000-0000-000000000002', 'Counters are the wrong stone');
reset role;
select is(
  (select balance_minor from public.escrow_accounts where id = '40000000-0000-0000-0000-000000000001'),
  50000::bigint,
  'opening a dispute moves nothing: the funds stay frozen in escrow'
);
select tests.authenticate_as_service('escrow_service');
-- a staff settlement carries its written reason, on the dispute it closes
update public.disputes set resolution = 'The counters are not the stone that was ordered'
where milestone_payment_id = '30000000-0000-0000-0000-000000000002' and status = 'open';
select lives_ok(
  $$update public.milestone_payments set status = 'refunded'
    where id = '30000000-0000-0000-0000-000000000002'$$,
  'escrow_service refunds the disputed payment'
);
reset role;
select results_eq(
  $$select code, amount from private.ledger_transfers
    where reference_id = '30000000-0000-0000-0000-000000000002' order by code$$,
  $$values ('milestone_funding', 30000::bigint), ('milestone_refund', 30000::bigint)$$,
  'the refund took the amount back out of escrow to clearing'
);
select is(
  (select balance_minor from public.escrow_accounts where id = '40000000-0000-0000-0000-000000000001'),
  20000::bigint,
  'the escrow holds only the last payment'
);
select is(
  (select sum(credits_posted - debits_posted + credits_pending - debits_pending)::bigint
    from private.ledger_balances),
  0::bigint,
  'money is conserved over all accounts'
);

select * from finish();
rollback;
