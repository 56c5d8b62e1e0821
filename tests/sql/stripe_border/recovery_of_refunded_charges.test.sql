-- A charge the processor refunded never funds its payment: a success refused because its
-- refund came first is recovered as refunded (resolved, nothing funded, nothing refunded
-- again), while a refused charge that was not refunded is still to be refunded.
begin;
select plan(7);

select tests.let_roles_call_pgtap();

-- fixtures, as postgres: hana pays carl for p1 and p2 (10000 × n USD), with one card
select tests.create_supabase_user('hana');
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
select tests.create_project_payments('hana', 'carl', 2);

select tests.authenticate_as_service('payment_service');
-- p1: Stripe's refund of pi_P1Refunded arrives before its success; both are refused
select is(
  public.apply_stripe_event(tests.stripe_event('charge.refunded', jsonb_build_object(
    'id', 'ch_P1Refunded', 'object', 'charge', 'payment_intent', 'pi_P1Refunded',
    'amount', 10000, 'amount_refunded', 10000, 'currency', 'usd', 'refunded', true
  ))) ->> 'status',
  'refused',
  'a refund of a charge that funded nothing is refused'
);
select is(
  public.apply_stripe_event(tests.stripe_event('payment_intent.succeeded',
    tests.payment_intent('pi_P1Refunded', '30000000-0000-4000-8000-000000000001', 10000)))
  ->> 'status',
  'refused',
  'its success, arriving after the refund, is refused'
);
select results_eq(
  $$select a ->> 'recovery', (a ->> 'resolved')::boolean
    from public.processor_inconsistencies as i,
      public.recover_processor_inconsistency(i.id) as a
    where i.processor_object_id = 'pi_P1Refunded'$$,
  $$values ('refund', true)$$,
  'its recovery is the refund the processor already made: resolved, with nothing to send'
);
reset role;
select results_eq(
  $$select status::text, processor_payment_intent_id from public.milestone_payments
    where id = '30000000-0000-4000-8000-000000000001'$$,
  $$values ('pending', null::text)$$,
  'p1 is not funded with the charge the payer has back'
);
select is(
  (select count(*)::int from private.ledger_transfers
    where reference_id = '30000000-0000-4000-8000-000000000001'),
  0,
  'and no money moved for it'
);
select matches(
  (select resolution from public.processor_inconsistencies
    where processor_object_id = 'pi_P1Refunded'),
  '^Refunded: the processor refunded PaymentIntent pi_P1Refunded \(charge\.refunded evt_',
  'the resolution names the refund event'
);

-- p2: a success for another amount is refused and never refunded by Stripe: still to refund
select tests.authenticate_as_service('payment_service');
select public.apply_stripe_event(tests.stripe_event('payment_intent.succeeded',
  tests.payment_intent('pi_P2Amount', '30000000-0000-4000-8000-000000000002', 19999)));
select results_eq(
  $$select a ->> 'recovery', (a ->> 'resolved')::boolean
    from public.processor_inconsistencies as i,
      public.recover_processor_inconsistency(i.id) as a
    where i.processor_object_id = 'pi_P2Amount'$$,
  $$values ('refund', false)$$,
  'a refused charge the processor did not refund is still to be refunded'
);
reset role;

select * from finish();
rollback;
