-- Chargebacks reach the same state whatever order their events arrive in: a
-- charge.dispute.created (or closed) refused because the payment was not funded yet is applied
-- by the success that funds it, in the same transaction, resolving the inconsistency it opened;
-- a charge.dispute.closed before its created opens the dispute itself; a chargeback that cannot
-- apply refuses the success, so the payment is never funded and releasable while its money is
-- taken back.
begin;
select plan(23);

select tests.let_roles_call_pgtap();

select tests.create_supabase_user('hana');
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
update private.settings set value = '0' where key = 'escrow_hold_seconds';
select tests.create_project_payments('hana', 'carl', 5);

-- p1: the chargeback before the success
select tests.authenticate_as_service('payment_service');
select results_eq(
  $$select a ->> 'status', a -> 'error' ->> 'code', a ? 'inconsistency_id'
    from public.apply_stripe_event(tests.stripe_event('charge.dispute.created',
      tests.stripe_dispute('du_Early01', 'pi_Order1', 10000), 'evt_EarlyCreatedOne')) as a$$,
  $$values ('refused', 'PT404', true)$$,
  'a chargeback before its success is refused, and recorded as an inconsistency'
);
select is(
  public.apply_stripe_event(tests.stripe_event('payment_intent.succeeded',
    tests.payment_intent('pi_Order1', '30000000-0000-4000-8000-000000000001', 10000),
    'evt_LateSuccessOne')) ->> 'status',
  'processed',
  'the success that follows is applied'
);
reset role;
select results_eq(
  $$select mp.status::text, d.status::text, d.opened_by = mp.payer_id, d.reason
    from public.milestone_payments as mp join public.disputes as d on d.milestone_payment_id = mp.id
    where mp.id = '30000000-0000-4000-8000-000000000001'$$,
  $$values ('disputed', 'open', true, 'Chargeback du_Early01 at the card issuer: fraudulent')$$,
  'the success funds the payment and disputes it with the chargeback''s dispute'
);
select results_eq(
  $$select kind, resolution from public.processor_inconsistencies
    where processor_object_id = 'du_Early01'$$,
  $$values ('chargeback_refused', 'Applied late: event evt_EarlyCreatedOne came before the '
    || 'success of PaymentIntent pi_Order1, and was applied when event evt_LateSuccessOne '
    || 'funded milestone payment 30000000-0000-4000-8000-000000000001')$$,
  'the chargeback''s inconsistency is resolved, naming both events'
);
select tests.authenticate_as('hana', aal => 'aal2');
select throws_ok(
  $$select tests.raise_if_refused(public.release_milestone_payment(
      '30000000-0000-4000-8000-000000000001', 'hana-release-early-1'))$$,
  'PT404', null,
  'the payer cannot release it while the chargeback is open'
);
reset role;
select tests.authenticate_as_service('payment_service');
select is(
  public.apply_stripe_event(tests.stripe_event('charge.dispute.closed',
    tests.stripe_dispute('du_Early01', 'pi_Order1', 10000, 'lost'))) ->> 'status',
  'processed',
  'the card issuer''s decision then applies as usual'
);
reset role;
select is(
  (select status::text from public.milestone_payments
    where id = '30000000-0000-4000-8000-000000000001'),
  'refunded',
  'lost: the payment is refunded'
);

-- p2: the chargeback and its decision, both before the success
select tests.authenticate_as_service('payment_service');
select public.apply_stripe_event(tests.stripe_event('charge.dispute.created',
  tests.stripe_dispute('du_Early02', 'pi_Order2', 20000)));
select results_eq(
  $$select a ->> 'status', a -> 'error' ->> 'code'
    from public.apply_stripe_event(tests.stripe_event('charge.dispute.closed',
      tests.stripe_dispute('du_Early02', 'pi_Order2', 20000, 'lost'))) as a$$,
  $$values ('refused', 'PT404')$$,
  'its decision before the success is refused too'
);
select is(
  public.apply_stripe_event(tests.stripe_event('payment_intent.succeeded',
    tests.payment_intent('pi_Order2', '30000000-0000-4000-8000-000000000002', 20000)))
    ->> 'status',
  'processed',
  'the success is applied'
);
reset role;
select results_eq(
  $$select mp.status::text, d.status::text, d.outcome::text, (
      select count(*)::int from private.ledger_transfers as t
      where t.reference_id = mp.id and t.code = 'milestone_funding'
    ), (
      select count(*)::int from private.ledger_transfers as t
      where t.reference_id = mp.id and t.code = 'milestone_refund'
    )
    from public.milestone_payments as mp join public.disputes as d on d.milestone_payment_id = mp.id
    where mp.id = '30000000-0000-4000-8000-000000000002'$$,
  $$values ('refunded', 'resolved', 'refund', 1, 1)$$,
  'funded, disputed and refunded in one go: funded once, refunded once'
);
select results_eq(
  $$select kind, resolution is not null from public.processor_inconsistencies
    where processor_object_id = 'du_Early02' order by kind$$,
  $$values ('chargeback_closing_refused', true), ('chargeback_refused', true)$$,
  'both inconsistencies are resolved'
);

-- p3: funded; the decision (won) before the chargeback
select tests.authenticate_as_service('payment_service');
select public.apply_stripe_event(tests.stripe_event('payment_intent.succeeded',
  tests.payment_intent('pi_Order3', '30000000-0000-4000-8000-000000000003', 30000)));
select is(
  public.apply_stripe_event(tests.stripe_event('charge.dispute.closed',
    tests.stripe_dispute('du_Early03', 'pi_Order3', 30000, 'won'))) ->> 'status',
  'processed',
  'a decision before its chargeback opens the dispute and decides it'
);
select is(
  public.apply_stripe_event(tests.stripe_event('charge.dispute.created',
    tests.stripe_dispute('du_Early03', 'pi_Order3', 30000))) ->> 'status',
  'processed',
  'the chargeback arriving afterwards is absorbed'
);
reset role;
select results_eq(
  $$select mp.status::text, d.status::text, (
      select count(*)::int from public.disputes as x where x.milestone_payment_id = mp.id
    )
    from public.milestone_payments as mp join public.disputes as d on d.milestone_payment_id = mp.id
    where mp.id = '30000000-0000-4000-8000-000000000003'$$,
  $$values ('funded', 'withdrawn', 1)$$,
  'won: one dispute, withdrawn, and the payment held in escrow again (not disputed again)'
);

-- p4: funded; the decision (lost) before the chargeback
select tests.authenticate_as_service('payment_service');
select public.apply_stripe_event(tests.stripe_event('payment_intent.succeeded',
  tests.payment_intent('pi_Order4', '30000000-0000-4000-8000-000000000004', 40000)));
select is(
  public.apply_stripe_event(tests.stripe_event('charge.dispute.closed',
    tests.stripe_dispute('du_Early04', 'pi_Order4', 40000, 'lost'))) ->> 'status',
  'processed',
  'a lost decision before its chargeback is applied'
);
select is(
  public.apply_stripe_event(tests.stripe_event('charge.dispute.created',
    tests.stripe_dispute('du_Early04', 'pi_Order4', 40000))) ->> 'status',
  'processed',
  'and its chargeback afterwards changes nothing'
);
reset role;
select results_eq(
  $$select mp.status::text, d.status::text, d.outcome::text
    from public.milestone_payments as mp join public.disputes as d on d.milestone_payment_id = mp.id
    where mp.id = '30000000-0000-4000-8000-000000000004'$$,
  $$values ('refunded', 'resolved', 'refund')$$,
  'lost: refunded, as in the usual order'
);

-- p5: a chargeback that cannot apply (another amount) refuses the success after it
select tests.authenticate_as_service('payment_service');
select public.apply_stripe_event(tests.stripe_event('charge.dispute.created',
  tests.stripe_dispute('du_Part05', 'pi_Order5', 50000) || '{"amount": 20000}'));
select results_eq(
  $$select a ->> 'status', a -> 'error' ->> 'code', a -> 'error' ->> 'message'
    from public.apply_stripe_event(tests.stripe_event('payment_intent.succeeded',
      tests.payment_intent('pi_Order5', '30000000-0000-4000-8000-000000000005', 50000))) as a$$,
  $$values ('refused', 'PT409', 'chargeback du_Part05 is for 20000 USD, but milestone payment '
    || '30000000-0000-4000-8000-000000000005 is for 50000 USD')$$,
  'a partial chargeback before the success refuses the success'
);
reset role;
select results_eq(
  $$select mp.status::text, (select count(*)::int from public.disputes as d
      where d.milestone_payment_id = mp.id)
    from public.milestone_payments as mp where mp.id = '30000000-0000-4000-8000-000000000005'$$,
  $$values ('pending', 0)$$,
  'the payment is not funded'
);
select results_eq(
  $$select kind, resolution is null from public.processor_inconsistencies
    where processor_object_id in ('pi_Order5', 'du_Part05') order by kind$$,
  $$values ('charge_refused', true), ('chargeback_refused', true)$$,
  'the charge and the chargeback are both open for operations'
);

-- a refused chargeback of another PaymentIntent, or of a connected account, is not taken
select tests.authenticate_as_service('payment_service');
select public.apply_stripe_event(tests.stripe_event('charge.dispute.created',
  tests.stripe_dispute('du_Foreign06', 'pi_Order6', 10000)) || jsonb_build_object('account', tests.token_lookup('acct_1Foreign06')));
reset role;
select is(
  (select count(*)::int from private.refused_chargeback_events('charge.dispute.created',
    'pi_Order6')),
  0,
  'a connected account''s chargeback is never applied to a platform payment'
);
select is(
  (select count(*)::int from private.refused_chargeback_events('charge.dispute.created',
    'pi_Order1')),
  1,
  'the refused chargeback of pi_Order1 is found by its intent'
);

select is(
  (select sum(credits_posted - debits_posted + credits_pending - debits_pending)::bigint
    from private.ledger_balances),
  0::bigint,
  'every ledger account still sums to zero'
);

select * from finish();
rollback;
