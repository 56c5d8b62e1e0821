-- A charge that funded its payment is never refunded as if it had not: funding a payment
-- with a PaymentIntent resolves the open inconsistencies about that charge (charge_unrecorded,
-- charge_refused) in the same transaction; one recorded after the funding is recorded
-- resolved; the recovery takes the open attempt that recorded no intent for the charge's own
-- (fund, not refund) and resolves without a refund a charge that already funded its payment.
-- A charge that did not fund its payment is still to be refunded.
begin;
select plan(24);

select tests.let_roles_call_pgtap();

-- fixtures, as postgres: hana pays carl for p1..p5 (10000 × n USD), with one card
select tests.create_supabase_user('hana');
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
select tests.create_project_payments('hana', 'carl', 5);
insert into public.payment_methods (id, user_id, type, processor_payment_method_id_sealed, processor_payment_method_id_lookup, processor_customer_id_lookup)
values ('40000000-0000-4000-8000-000000000001', tests.get_supabase_uid('hana'), 'credit_card',
  tests.sealed_token(), tests.token_lookup('pm_HanaCard01'), tests.token_lookup('cus_HanaCust01'));

-- hana opens an attempt on each payment; the function never records its intent
select tests.authenticate_as('hana');
select tests.raise_if_refused(public.begin_funding_attempt(
  format('30000000-0000-4000-8000-00000000000%s', n)::uuid, '40000000-0000-4000-8000-000000000001'))
from generate_series(1, 5) as n;
reset role;

-- p1: the recovery comes first; the open attempt with no intent is the charge's own
select tests.authenticate_as_service('payment_service');
select set_config('fixture.i1', public.record_processor_inconsistency(
  'charge_unrecorded', 'pi_P1NoRecord', '30000000-0000-4000-8000-000000000001', 10000, 'USD',
  'The PaymentIntent could not be recorded for attempt 1') ->> 'id', true);
select results_eq(
  $$select a ->> 'recovery', (a ->> 'resolved')::boolean
    from public.recover_processor_inconsistency(current_setting('fixture.i1')::uuid) as a$$,
  $$values ('fund', true)$$,
  'an open attempt with no intent recorded is the charge''s own: the recovery funds, it does not refund'
);
select results_eq(
  $$select status::text, processor_payment_intent_id from public.milestone_payments
    where id = '30000000-0000-4000-8000-000000000001'$$,
  $$values ('funded', 'pi_P1NoRecord')$$,
  'p1 is funded with the charge'
);
select results_eq(
  $$select attempt, status, processor_payment_intent_id from public.funding_attempts
    where milestone_payment_id = '30000000-0000-4000-8000-000000000001'$$,
  $$values (1, 'succeeded', 'pi_P1NoRecord')$$,
  'and its attempt records the intent and succeeds'
);
select is(
  public.apply_stripe_event(tests.stripe_event('payment_intent.succeeded',
    tests.payment_intent('pi_P1NoRecord', '30000000-0000-4000-8000-000000000001', 10000))) ->> 'status',
  'processed',
  'Stripe''s success for it, arriving afterwards, is absorbed'
);
reset role;
select is(
  (select count(*)::int from private.ledger_transfers
    where reference_id = '30000000-0000-4000-8000-000000000001' and code = 'milestone_funding'),
  1,
  'p1 is funded once'
);

-- p2: the webhook comes first: the charge funds p2 and resolves the inconsistency with it
select tests.authenticate_as_service('payment_service');
select set_config('fixture.i2', public.record_processor_inconsistency(
  'charge_unrecorded', 'pi_P2Webhook', '30000000-0000-4000-8000-000000000002', 20000, 'USD',
  'The PaymentIntent could not be recorded for attempt 1') ->> 'id', true);
select is(
  public.apply_stripe_event(tests.stripe_event('payment_intent.succeeded',
    tests.payment_intent('pi_P2Webhook', '30000000-0000-4000-8000-000000000002', 20000))) ->> 'status',
  'processed',
  'the webhook funds p2 with the charge the function could not record'
);
select results_eq(
  $$select recovery, resolution like 'Funded: milestone payment 30000000-0000-4000-8000-000000000002 was funded with PaymentIntent pi_P2Webhook%',
      resolved_at = now()
    from public.processor_inconsistencies where id = current_setting('fixture.i2')::uuid$$,
  $$values ('fund', true, true)$$,
  'and resolves its inconsistency in the same transaction'
);
select results_eq(
  $$select a ->> 'recovery', (a ->> 'resolved')::boolean
    from public.recover_processor_inconsistency(current_setting('fixture.i2')::uuid) as a$$,
  $$values ('fund', true)$$,
  'its recovery afterwards answers funded and resolved: no refund'
);
select is(
  (select status::text from public.milestone_payments where id = '30000000-0000-4000-8000-000000000002'),
  'funded',
  'and p2 stays funded'
);

-- p3: the webhook wins the race against the function's report: it is recorded resolved
select is(
  public.apply_stripe_event(tests.stripe_event('payment_intent.succeeded',
    tests.payment_intent('pi_P3Race', '30000000-0000-4000-8000-000000000003', 30000))) ->> 'status',
  'processed',
  'the webhook funds p3 first'
);
select results_eq(
  $$select i ->> 'recovery', i ->> 'resolution' like 'Funded already: milestone payment 30000000-0000-4000-8000-000000000003%',
      i ->> 'resolved_at' is not null
    from public.record_processor_inconsistency(
      'charge_unrecorded', 'pi_P3Race', '30000000-0000-4000-8000-000000000003', 30000, 'USD',
      'The PaymentIntent could not be recorded for attempt 1') as i$$,
  $$values ('fund', true, true)$$,
  'the function''s report that follows is recorded resolved: the charge funded its payment'
);
select results_eq(
  $$select a ->> 'recovery', (a ->> 'resolved')::boolean
    from public.recover_processor_inconsistency((select id from public.processor_inconsistencies
      where processor_object_id = 'pi_P3Race')) as a$$,
  $$values ('fund', true)$$,
  'and its recovery refunds nothing'
);

-- p4: another intent is in flight, so the charge is marked to be refunded; that intent fails,
-- a new attempt opens, and the charge funds p4 before the refund is made: funded, not refunded
select tests.raise_if_refused(public.record_payment_intent(
  '30000000-0000-4000-8000-000000000004', 1, 'pi_P4InFlight'));
select set_config('fixture.i4', public.record_processor_inconsistency(
  'charge_unrecorded', 'pi_P4Stray', '30000000-0000-4000-8000-000000000004', 40000, 'USD',
  'A charge whose record was lost') ->> 'id', true);
select results_eq(
  $$select a ->> 'recovery', (a ->> 'resolved')::boolean
    from public.recover_processor_inconsistency(current_setting('fixture.i4')::uuid) as a$$,
  $$values ('refund', false)$$,
  'a charge while an attempt with another intent is in flight is marked to be refunded'
);
select throws_ok(
  $$update public.processor_inconsistencies set recovery = 'fund', resolution = 'Changed my mind about it'
    where id = current_setting('fixture.i4')::uuid$$,
  'PT409',
  format('processor inconsistency %s is recovered by refund: set once', current_setting('fixture.i4')),
  'a refund decided is not turned into funding while the charge has funded nothing'
);
select is(
  public.apply_stripe_event(tests.stripe_event('payment_intent.payment_failed',
    tests.payment_intent('pi_P4InFlight', '30000000-0000-4000-8000-000000000004', 40000,
      extra => '{"status": "requires_payment_method", "last_payment_error": {"code": "card_declined", "message": "Declined"}}'))) ->> 'status',
  'processed',
  'the intent in flight fails'
);
reset role;
select tests.authenticate_as('hana');
select is(
  tests.raise_if_refused(public.begin_funding_attempt('30000000-0000-4000-8000-000000000004',
    '40000000-0000-4000-8000-000000000001')) ->> 'attempt',
  '2',
  'hana opens attempt 2'
);
reset role;
select tests.authenticate_as_service('payment_service');
select is(
  public.apply_stripe_event(tests.stripe_event('payment_intent.succeeded',
    tests.payment_intent('pi_P4Stray', '30000000-0000-4000-8000-000000000004', 40000))) ->> 'status',
  'processed',
  'the stray charge''s success funds p4 through the open attempt'
);
select results_eq(
  $$select a ->> 'recovery', (a ->> 'resolved')::boolean
    from public.recover_processor_inconsistency(current_setting('fixture.i4')::uuid) as a$$,
  $$values ('fund', true)$$,
  'the charge marked to be refunded funded p4 first: resolved as funded, so no refund is sent'
);

-- p5: the payer cancels; the charge did not fund p5, so it is still refunded
select set_config('fixture.i5', public.record_processor_inconsistency(
  'charge_unrecorded', 'pi_P5Canceled', '30000000-0000-4000-8000-000000000005', 50000, 'USD',
  'The PaymentIntent could not be recorded for attempt 1') ->> 'id', true);
reset role;
select tests.authenticate_as('hana');
select is(
  tests.raise_if_refused(public.cancel_milestone_payment('30000000-0000-4000-8000-000000000005',
    'cancel-p5')) ->> 'status',
  'canceled',
  'hana cancels p5'
);
reset role;
select tests.authenticate_as_service('payment_service');
select results_eq(
  $$select a ->> 'recovery', (a ->> 'resolved')::boolean
    from public.recover_processor_inconsistency(current_setting('fixture.i5')::uuid) as a$$,
  $$values ('refund', false)$$,
  'a charge whose payment was canceled is still to be refunded'
);
select is(
  (select status::text from public.milestone_payments where id = '30000000-0000-4000-8000-000000000005'),
  'canceled',
  'and p5 stays canceled'
);
select is(
  (select count(*)::int from public.processor_inconsistencies where resolution is null),
  1,
  'only p5''s charge is still open'
);
select is(
  (select count(*)::int from public.processor_inconsistencies
    where processor_object_id = 'pi_P5Canceled' and resolution is null),
  1,
  'and it is p5''s'
);
reset role;
select is(
  (select count(*)::int from private.ledger_transfers
    where code = 'milestone_funding' and reference_id in (
      '30000000-0000-4000-8000-000000000002', '30000000-0000-4000-8000-000000000003',
      '30000000-0000-4000-8000-000000000004')),
  3,
  'p2, p3 and p4 are each funded once'
);

select * from finish();
rollback;
