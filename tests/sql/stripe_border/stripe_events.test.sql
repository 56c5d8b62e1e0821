-- public.apply_stripe_event: each verified Stripe event is recorded once by its id and applied
-- in the transaction that marks it, through the same transition rules as every other caller.
-- What the rules refuse is recorded as refused (its effects rolled back), what fails
-- unexpectedly as failed (and applied again on the next delivery); only payment_service calls it.
begin;
select plan(39);

-- the backend and staff roles may call pgTAP's assertions (rolled back with the test)
select tests.let_roles_call_pgtap();

-- fixtures, as postgres: hana pays carl for four milestones (p1 to p4), all pending
select tests.create_supabase_user('hana');
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
select tests.create_supabase_user('ada');
update public.users set role = 'admin' where id = tests.get_supabase_uid('ada');
update private.settings set value = '0' where key = 'escrow_hold_seconds';
select tests.create_project_with_milestones(
  'hana',
  'carl',
  amounts => array[40000, 30000, 20000, 10000],
  titles => array['Milestone 1', 'Milestone 2', 'Milestone 3', 'Milestone 4']
);
select set_config('fixture.p1', '30000000-0000-4000-8000-000000000001', true);
select set_config('fixture.p2', '30000000-0000-4000-8000-000000000002', true);
select set_config('fixture.p3', '30000000-0000-4000-8000-000000000003', true);
select set_config('fixture.p4', '30000000-0000-4000-8000-000000000004', true);

-- only payment_service applies events
select tests.clear_authentication();
select throws_ok(
  $$select public.apply_stripe_event(tests.stripe_event('customer.created', '{"id": "cus_Anon01"}'))$$,
  '42501', 'permission denied for function apply_stripe_event',
  'anon cannot apply a Stripe event'
);
reset role;
select tests.authenticate_as('hana', aal => 'aal2');
select throws_ok(
  format(
    $$select public.apply_stripe_event(tests.stripe_event('payment_intent.succeeded',
      tests.payment_intent('pi_Forged01', %L, 40000)))$$,
    current_setting('fixture.p1')
  ),
  '42501', 'permission denied for function apply_stripe_event',
  'a user cannot apply a Stripe event (to fund their own payment)'
);
reset role;
select tests.authenticate_as_service('service_role');
select throws_ok(
  $$select public.apply_stripe_event(tests.stripe_event('customer.created', '{"id": "cus_Srv01"}'))$$,
  '42501', 'permission denied for function apply_stripe_event',
  'service_role cannot apply a Stripe event'
);
reset role;
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select throws_ok(
  $$select public.apply_stripe_event(tests.stripe_event('customer.created', '{"id": "cus_Adm01"}'))$$,
  '42501', 'permission denied for function apply_stripe_event',
  'admin cannot apply a Stripe event'
);

-- payment_intent.succeeded funds the payment it names, once
reset role;
select tests.authenticate_as_service('payment_service');
select set_config('fixture.e1', (tests.stripe_event('payment_intent.succeeded',
  tests.payment_intent('pi_P1first', current_setting('fixture.p1')::uuid, 40000)))::text, true);
select results_eq(
  $$select a ->> 'status', a ->> 'type', a ? 'error'
    from public.apply_stripe_event(current_setting('fixture.e1')::jsonb) as a$$,
  $$values ('processed', 'payment_intent.succeeded', false)$$,
  'payment_service applies payment_intent.succeeded: processed'
);
select results_eq(
  $$select status::text, processor_payment_intent_id from public.milestone_payments
    where id = current_setting('fixture.p1')::uuid$$,
  $$values ('funded', 'pi_P1first')$$,
  'the payment it names is funded with its PaymentIntent'
);
select results_eq(
  $$select a ->> 'status', a ->> 'recorded_status'
    from public.apply_stripe_event(current_setting('fixture.e1')::jsonb) as a$$,
  $$values ('duplicate', 'processed')$$,
  'the same event delivered again is a duplicate'
);
select results_eq(
  $$select count(*)::int, min(status::text) from public.webhook_events
    where id = current_setting('fixture.e1')::jsonb ->> 'id'$$,
  $$values (1, 'processed')$$,
  'the event is recorded once, processed'
);
select is(
  public.apply_stripe_event(tests.stripe_event('payment_intent.succeeded',
    tests.payment_intent('pi_P1first', current_setting('fixture.p1')::uuid, 40000))) ->> 'status',
  'processed',
  'another event for the same success (a new event id) is absorbed'
);
reset role;
select is(
  (select count(*)::int from private.ledger_transfers
    where reference_id = current_setting('fixture.p1')::uuid and code = 'milestone_funding'),
  1,
  'and the payment was funded once: one funding transfer'
);

-- a wrong amount, a wrong currency, no payment, an unknown payment: refused, nothing applied
select tests.authenticate_as_service('payment_service');
select results_eq(
  $$select a ->> 'status', a -> 'error' ->> 'code', a -> 'error' ->> 'message'
    from public.apply_stripe_event(tests.stripe_event('payment_intent.succeeded',
      tests.payment_intent('pi_P2wrong', current_setting('fixture.p2')::uuid, 30001))) as a$$,
  $$values ('refused', 'PT409', 'PaymentIntent pi_P2wrong is for 30001 USD, but milestone payment '
    || current_setting('fixture.p2') || ' is for 30000 USD')$$,
  'a success for another amount than the payment''s is refused'
);
select results_eq(
  $$select status::text from public.milestone_payments where id = current_setting('fixture.p2')::uuid
    union all
    select count(*)::text from public.payment_transactions where processor_transaction_id = 'pi_P2wrong'$$,
  $$values ('pending'), ('0')$$,
  'the refused event funded nothing and recorded no charge'
);
select results_eq(
  $$select e.status::text, e.error_code from public.webhook_events as e
    where e.payload -> 'data' -> 'object' ->> 'id' = 'pi_P2wrong'$$,
  $$values ('refused', 'PT409')$$,
  'the refused event is recorded with its error'
);
select results_eq(
  $$select kind, milestone_payment_id::text, amount_minor, currency::text, resolution
    from public.processor_inconsistencies where processor_object_id = 'pi_P2wrong'$$,
  $$values ('charge_refused', current_setting('fixture.p2'), 30001::bigint, 'USD', null::text)$$,
  'and the charge the database refused is an open inconsistency, for operations'
);
select results_eq(
  $$select a ->> 'status', a -> 'error' ->> 'code'
    from public.apply_stripe_event(tests.stripe_event('payment_intent.succeeded',
      tests.payment_intent('pi_P2euro', current_setting('fixture.p2')::uuid, 30000, 'eur'))) as a$$,
  $$values ('refused', 'PT409')$$,
  'a success in another currency than the payment''s is refused'
);
select results_eq(
  $$select a ->> 'status', a -> 'error' ->> 'code', a -> 'error' ->> 'message'
    from public.apply_stripe_event(tests.stripe_event('payment_intent.succeeded',
      '{"id": "pi_NoMeta01", "object": "payment_intent", "amount": 30000, "currency": "usd", "metadata": {}}'
    )) as a$$,
  $$values ('refused', 'PT422',
    'PaymentIntent pi_NoMeta01 names no milestone payment in its metadata (milestone_payment_id)')$$,
  'a success naming no milestone payment is refused'
);
select results_eq(
  $$select a ->> 'status', a -> 'error' ->> 'code'
    from public.apply_stripe_event(tests.stripe_event('payment_intent.succeeded',
      tests.payment_intent('pi_Nowhere01', gen_random_uuid(), 30000))) as a$$,
  $$values ('refused', 'PT404')$$,
  'a success naming an unknown milestone payment is refused'
);
select is(
  public.apply_stripe_event(tests.stripe_event('customer.created', '{"id": "cus_Other01"}')) ->> 'status',
  'ignored',
  'a type payguard does not act on is recorded as ignored'
);

-- a declined charge fails the payment; the payer is told and may pay again
select is(
  public.apply_stripe_event(tests.stripe_event('payment_intent.payment_failed',
    tests.payment_intent('pi_P2declined', current_setting('fixture.p2')::uuid, 30000, extra =>
      '{"status": "requires_payment_method", "last_payment_error": {"code": "card_declined", "decline_code": "insufficient_funds", "message": "Your card has insufficient funds."}}'
    ))) ->> 'status',
  'processed',
  'payment_intent.payment_failed is applied'
);
reset role;
select results_eq(
  $$select mp.status::text, (
      select count(*)::int from public.notifications as n
      where n.milestone_payment_id = mp.id and n.user_id = mp.payer_id
        and n.event = 'milestone_payment.failed'
    )
    from public.milestone_payments as mp where mp.id = current_setting('fixture.p2')::uuid$$,
  $$values ('failed', 1)$$,
  'the payment is failed, and its payer notified'
);
select tests.authenticate_as_service('payment_service');
select is(
  public.apply_stripe_event(tests.stripe_event('payment_intent.succeeded',
    tests.payment_intent('pi_P2second', current_setting('fixture.p2')::uuid, 30000))) ->> 'status',
  'processed',
  'a later charge that succeeds is applied'
);
select is(
  (select status::text from public.milestone_payments where id = current_setting('fixture.p2')::uuid),
  'funded',
  'and funds the failed payment'
);

-- charge.refunded refunds a funded payment: escrow back to clearing, the refund recorded
select is(
  public.apply_stripe_event(tests.stripe_event('charge.refunded', jsonb_build_object(
    'id', 'ch_P1first', 'object', 'charge', 'payment_intent', 'pi_P1first', 'amount', 40000,
    'amount_refunded', 40000, 'currency', 'usd', 'refunded', true,
    'refunds', jsonb_build_object('data', jsonb_build_array(jsonb_build_object('id', 're_P1first')))
  ))) ->> 'status',
  'processed',
  'charge.refunded is applied'
);
reset role;
select results_eq(
  $$select mp.status::text,
      (select t.type::text || ' ' || t.amount_minor from public.payment_transactions as t
        where t.processor_transaction_id = 're_P1first'),
      (select count(*)::int from private.ledger_transfers as lt
        where lt.reference_id = mp.id and lt.code = 'milestone_refund')
    from public.milestone_payments as mp where mp.id = current_setting('fixture.p1')::uuid$$,
  $$values ('refunded', 'refund 40000', 1)$$,
  'the payment is refunded, the refund recorded, and the escrow paid back to clearing once'
);

-- out of order: a refund before the success it refunds; the success is then refused
select tests.authenticate_as_service('payment_service');
select results_eq(
  $$select a ->> 'status', a -> 'error' ->> 'code'
    from public.apply_stripe_event(tests.stripe_event('charge.refunded', jsonb_build_object(
      'id', 'ch_P3early', 'object', 'charge', 'payment_intent', 'pi_P3early', 'amount', 20000,
      'amount_refunded', 20000, 'currency', 'usd', 'refunded', true
    ))) as a$$,
  $$values ('refused', 'PT404')$$,
  'a refund of a charge no payment was funded by is refused'
);
select results_eq(
  $$select a ->> 'status', a -> 'error' ->> 'message'
    from public.apply_stripe_event(tests.stripe_event('payment_intent.succeeded',
      tests.payment_intent('pi_P3early', current_setting('fixture.p3')::uuid, 20000))) as a$$,
  $$values ('refused', 'PaymentIntent pi_P3early was refunded before its success reached milestone payment '
    || current_setting('fixture.p3'))$$,
  'the success that arrives after its refund is refused'
);
select is(
  (select status::text from public.milestone_payments where id = current_setting('fixture.p3')::uuid),
  'pending',
  'and the payment stays pending: nothing is funded with money already returned'
);

-- a PaymentIntent's client secret is not kept
select is(
  public.apply_stripe_event(tests.stripe_event('payment_intent.payment_failed',
    tests.payment_intent('pi_P3secret', current_setting('fixture.p3')::uuid, 20000,
      extra => '{"client_secret": "pi_P3secret_secret_Zq8dV1"}'), 'evt_Secret01')) ->> 'status',
  'processed',
  'an event about a PaymentIntent with its client secret is applied'
);
select is(
  (select strpos(payload::text, 'secret_Zq8dV1') from public.webhook_events where id = 'evt_Secret01'),
  0,
  'and stored without the client secret'
);

-- card-like text in an event is never stored: the event is stored redacted, and applied
select results_eq(
  $$select a ->> 'status', a -> 'error' ->> 'code'
    from public.apply_stripe_event(tests.stripe_event('payment_intent.succeeded',
      tests.payment_intent('pi_P3card', current_setting('fixture.p3')::uuid, 20000,
        extra => '{"description": "card 4242 4242 4242 4242"}'), 'evt_CardData01')) as a$$,
  $$values ('processed', null::text)$$,
  'an event holding a card number is applied'
);
select results_eq(
  $$select strpos(payload::text, '4242') = 0, payload -> 'data' -> 'object' ->> 'id',
      (payload -> 'data' -> 'object' ->> 'amount')::bigint,
      payload -> 'data' -> 'object' -> 'metadata' ->> 'milestone_payment_id'
    from public.webhook_events where id = 'evt_CardData01'$$,
  $$values (true, 'pi_P3card', 20000::bigint, current_setting('fixture.p3'))$$,
  'and recorded without the card number, with the processor''s ids and amounts'
);
select is(
  (select status::text from public.milestone_payments where id = current_setting('fixture.p3')::uuid),
  'funded',
  'its effect is applied: the payment is funded'
);

-- an unexpected error (here a privilege withdrawn by mistake) fails the event, for a retry
reset role;
revoke update (status, processor_payment_intent_id) on public.milestone_payments
from payment_service;
select tests.authenticate_as_service('payment_service');
select set_config('fixture.e4', (tests.stripe_event('payment_intent.succeeded',
  tests.payment_intent('pi_P4retry', current_setting('fixture.p4')::uuid, 10000)))::text, true);
select results_eq(
  $$select a ->> 'status', a -> 'error' ->> 'code'
    from public.apply_stripe_event(current_setting('fixture.e4')::jsonb) as a$$,
  $$values ('failed', '42501')$$,
  'an unexpected error fails the event'
);
select results_eq(
  $$select e.status::text, e.error_code, e.processed_at is null, (
      select mp.status::text from public.milestone_payments as mp
      where mp.id = current_setting('fixture.p4')::uuid
    )
    from public.webhook_events as e where e.id = current_setting('fixture.e4')::jsonb ->> 'id'$$,
  $$values ('failed', '42501', true, 'pending')$$,
  'it is recorded as failed with its error, and nothing of it was applied'
);
reset role;
grant update (status, processor_payment_intent_id) on public.milestone_payments
to payment_service;
select tests.authenticate_as_service('payment_service');
select results_eq(
  $$select a ->> 'status', (a ->> 'deliveries')::int
    from public.apply_stripe_event(current_setting('fixture.e4')::jsonb) as a$$,
  $$values ('processed', 2)$$,
  'the next delivery of the failed event applies it'
);
select is(
  (select status::text from public.milestone_payments where id = current_setting('fixture.p4')::uuid),
  'funded',
  'and funds the payment'
);

-- refused for good, or failed for now
reset role;
select results_eq(
  $$select private.refuses_event(s) from unnest(array[
      'PT409', 'PT422', '23505', '22P02', 'P0001', '40P01', '40001', '55P03', '57014', '42501'
    ]) as s$$,
  $$values (true), (true), (true), (true), (true), (false), (false), (false), (false), (false)$$,
  'business-rule and data errors refuse an event; deadlocks, serialization, lock and statement '
  'timeouts and missing privileges fail it, to be retried'
);

-- the money still adds up
select is(
  (select sum(credits_posted - debits_posted + credits_pending - debits_pending)::bigint
    from private.ledger_balances),
  0::bigint,
  'every ledger account still sums to zero'
);
select is_empty(
  $$select mp.id from public.milestone_payments as mp
    where mp.status in ('funded', 'disputed', 'released', 'refunded', 'split') and not exists (
      select from public.payment_transactions as t
      where t.processor_transaction_id = mp.processor_payment_intent_id and t.status = 'succeeded'
        and t.amount_minor = mp.amount_minor and t.currency = mp.currency)$$,
  'every funded payment has its succeeded charge'
);

select * from finish();
rollback;
