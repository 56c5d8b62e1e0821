-- Refund obligations: a dispute that staff resolve as a refund or a split owes the payer a
-- refund at the processor (the whole charge, or the payer's share), recorded in the same
-- transaction under `milestone_payment:<id>:refund`; a recovery that decides to refund a charge
-- owes it under `processor_inconsistency:<id>:refund`. payment_service lists what is due, records
-- what Stripe made or refused (the next key after a refusal, after a wait), and charge.refunded
-- confirms it; a refund of another amount is refused and reported. A chargeback that the card
-- issuer decided owes nothing. No other role lists or records refunds.
begin;
select plan(30);

select tests.let_roles_call_pgtap();

-- fixtures, as postgres: hana pays carl for p1 (10000), p2 (20000), p3 (30000), all funded
select tests.create_supabase_user('hana');
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
select tests.create_supabase_user('ada');
update public.users set role = 'admin' where id = tests.get_supabase_uid('ada');
update private.settings set value = '0' where key = 'escrow_hold_seconds';
select tests.create_project_payments('hana', 'carl', 4);
select tests.authenticate_as_service('payment_service');
select public.apply_stripe_event(tests.stripe_event('payment_intent.succeeded',
  tests.payment_intent('pi_Owed' || n, format('30000000-0000-4000-8000-00000000000%s', n)::uuid,
    10000 * n)))
from generate_series(1, 3) as n;
reset role;

-- hana disputes p1 and p2; ada resolves p1 as a refund and p2 as a split (carl gets 5000)
select tests.authenticate_as('hana');
select tests.raise_if_refused(public.open_dispute(
  format('30000000-0000-4000-8000-00000000000%s', n)::uuid, 'The work was never done',
  'hana-dispute-' || n))
from generate_series(1, 2) as n;
reset role;
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select tests.raise_if_refused(public.resolve_dispute(
  (select id from public.disputes where milestone_payment_id = '30000000-0000-4000-8000-000000000001'),
  'refund', 'Checked the evidence: the contractor never came', 'ada-resolve-1'));
select tests.raise_if_refused(public.resolve_dispute(
  (select id from public.disputes where milestone_payment_id = '30000000-0000-4000-8000-000000000002'),
  'split', 'Half the work was done, the rest goes back', 'ada-resolve-2', 5000));
reset role;

select results_eq(
  $$select milestone_payment_id::text, reason, payment_intent_id, amount_minor, currency::text,
      idempotency_key = 'milestone_payment:' || milestone_payment_id || ':refund', status
    from private.refund_obligations order by amount_minor desc$$,
  $$values
    ('30000000-0000-4000-8000-000000000002', 'dispute_split', 'pi_Owed2', 15000::bigint, 'USD',
      true, 'due'),
    ('30000000-0000-4000-8000-000000000001', 'dispute_refund', 'pi_Owed1', 10000::bigint, 'USD',
      true, 'due')$$,
  'each decision owes a refund in its transaction: the whole charge, or the payer''s share'
);

-- what is due, for payment_service only
select tests.authenticate_as_service('payment_service');
select results_eq(
  $$select payment_intent_id, amount_minor, attempt, idempotency_key
    from public.refunds_to_send() order by amount_minor$$,
  $$values
    ('pi_Owed1', 10000::bigint, 1, 'milestone_payment:30000000-0000-4000-8000-000000000001:refund'),
    ('pi_Owed2', 15000::bigint, 1, 'milestone_payment:30000000-0000-4000-8000-000000000002:refund')$$,
  'payment_service lists the refunds to send, with their keys'
);
reset role;
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select throws_ok($$select * from public.refunds_to_send()$$, '42501', null,
  'an admin does not list refunds to send');
select throws_ok(
  $$select public.record_refund_sent(gen_random_uuid(), 're_Forged01')$$, '42501', null,
  'nor records one');
reset role;
select tests.authenticate_as('hana', aal => 'aal2');
select throws_ok($$select * from public.refunds_to_send()$$, '42501', null,
  'nor does a user');
select throws_ok($$select count(*) from private.refund_obligations$$, '42501', null,
  'and no API role reads the obligations');
reset role;

-- Stripe refused p1's first attempt: the next key, after the wait
select set_config('fixture.o1', (select id::text from private.refund_obligations
  where milestone_payment_id = '30000000-0000-4000-8000-000000000001'), true);
select set_config('fixture.o2', (select id::text from private.refund_obligations
  where milestone_payment_id = '30000000-0000-4000-8000-000000000002'), true);
select tests.authenticate_as_service('payment_service');
select results_eq(
  $$select a ->> 'attempt', a ->> 'failure_code', a ->> 'next_idempotency_key'
    from public.record_refund_refusal(current_setting('fixture.o1')::uuid,
      'milestone_payment:30000000-0000-4000-8000-000000000001:refund', 'balance_insufficient',
      'Not enough balance') as a$$,
  $$values ('1', 'balance_insufficient',
    'milestone_payment:30000000-0000-4000-8000-000000000001:refund:2')$$,
  'a refusal Stripe answered moves the refund to its next key'
);
select results_eq(
  $$select a ->> 'next_idempotency_key'
    from public.record_refund_refusal(current_setting('fixture.o1')::uuid,
      'milestone_payment:30000000-0000-4000-8000-000000000001:refund', 'balance_insufficient',
      'Not enough balance') as a$$,
  $$values ('milestone_payment:30000000-0000-4000-8000-000000000001:refund:2')$$,
  'the same refusal recorded again changes nothing'
);
select throws_ok(
  $$select public.record_refund_refusal(current_setting('fixture.o1')::uuid,
      'milestone_payment:30000000-0000-4000-8000-000000000001:refund:7', 'x', 'y')$$,
  'PT409', null,
  'a refusal under a key that is not the current one is refused'
);
select results_eq(
  $$select payment_intent_id from public.refunds_to_send()$$,
  $$values ('pi_Owed2')$$,
  'a refused refund waits before it is sent again'
);
reset role;
update private.settings set value = '0' where key = 'refund_retry_seconds';
select tests.authenticate_as_service('payment_service');
select results_eq(
  $$select idempotency_key from public.refunds_to_send() where payment_intent_id = 'pi_Owed1'$$,
  $$values ('milestone_payment:30000000-0000-4000-8000-000000000001:refund:2')$$,
  'then it is due again, under its next key'
);

-- Stripe made the refunds: recorded, then confirmed by charge.refunded
select is(
  public.record_refund_sent(current_setting('fixture.o1')::uuid, 're_Owed1') ->> 'status',
  'sent',
  'the refund Stripe made is recorded'
);
select is(
  public.record_refund_sent(current_setting('fixture.o1')::uuid, 're_Owed1') ->> 'status',
  'sent',
  'recording it again changes nothing'
);
select throws_ok(
  $$select public.record_refund_sent(current_setting('fixture.o1')::uuid, 're_Other01')$$,
  'PT409', null,
  'another refund for the same obligation is refused'
);
select throws_ok(
  $$select public.record_refund_refusal(current_setting('fixture.o1')::uuid,
      'milestone_payment:30000000-0000-4000-8000-000000000001:refund:2', 'x', 'y')$$,
  'PT409', null,
  'a refusal of a refund that was made is refused'
);
select is(
  (select count(*)::int from public.refunds_to_send()),
  1,
  'a refund sent is no longer due'
);
select is(
  public.apply_stripe_event(tests.stripe_event('charge.refunded', jsonb_build_object(
    'id', 'ch_Owed1', 'object', 'charge', 'payment_intent', 'pi_Owed1', 'amount', 10000,
    'amount_refunded', 10000, 'currency', 'usd',
    'refunds', jsonb_build_object('data', jsonb_build_array(jsonb_build_object('id', 're_Owed1'))))))
    ->> 'status',
  'processed',
  'charge.refunded of the refunded payment''s whole charge is applied'
);
-- the split's refund: the whole charge is not what is owed
select results_eq(
  $$select a ->> 'status', a -> 'error' ->> 'code'
    from public.apply_stripe_event(tests.stripe_event('charge.refunded', jsonb_build_object(
      'id', 'ch_Owed2', 'object', 'charge', 'payment_intent', 'pi_Owed2', 'amount', 20000,
      'amount_refunded', 20000, 'currency', 'usd'))) as a$$,
  $$values ('refused', 'PT422')$$,
  'a refund of a split''s whole charge is refused: the payer is owed only their share'
);
select is(
  public.apply_stripe_event(tests.stripe_event('charge.refunded', jsonb_build_object(
    'id', 'ch_Owed2b', 'object', 'charge', 'payment_intent', 'pi_Owed2', 'amount', 20000,
    'amount_refunded', 15000, 'currency', 'usd'))) ->> 'status',
  'processed',
  'the refund of the payer''s share of the split is applied'
);
reset role;
select results_eq(
  $$select o.milestone_payment_id::text, o.status, o.processor_refund_id,
      (select count(*)::int from public.payment_transactions as t
        where t.type = 'refund' and t.processor_transaction_id = coalesce(o.processor_refund_id, 'ch_Owed2b'))
    from private.refund_obligations as o order by o.amount_minor$$,
  $$values ('30000000-0000-4000-8000-000000000001', 'confirmed', 're_Owed1', 1),
    ('30000000-0000-4000-8000-000000000002', 'confirmed', null, 1)$$,
  'both are confirmed, each refund recorded once'
);
select results_eq(
  $$select kind, milestone_payment_id::text, resolution is null from public.processor_inconsistencies
    where processor_object_id = 'ch_Owed2'$$,
  $$values ('refund_refused', '30000000-0000-4000-8000-000000000002', true)$$,
  'the refund of the wrong amount is reported'
);
select throws_ok(
  $$update private.refund_obligations set status = 'due'
    where id = current_setting('fixture.o1')::uuid$$,
  'PT409', null,
  'a confirmed refund never goes back'
);
select throws_ok(
  $$update private.refund_obligations set amount_minor = 1
    where id = current_setting('fixture.o1')::uuid$$,
  'PT409', null,
  'what is owed never changes'
);

-- a chargeback that the issuer decided for the payer owes nothing: the issuer took it back
select tests.authenticate_as_service('payment_service');
select public.apply_stripe_event(tests.stripe_event('charge.dispute.created',
  tests.stripe_dispute('du_Owed3', 'pi_Owed3', 30000)));
select is(
  public.apply_stripe_event(tests.stripe_event('charge.dispute.closed',
    tests.stripe_dispute('du_Owed3', 'pi_Owed3', 30000, 'lost'))) ->> 'status',
  'processed',
  'a lost chargeback refunds p3'
);
reset role;
select is(
  (select count(*)::int from private.refund_obligations
    where milestone_payment_id = '30000000-0000-4000-8000-000000000003'),
  0,
  'and owes no refund of its own'
);

-- a recovery that refunds a charge owes it under the recovery's key; a settlement cancels it
select tests.authenticate_as_service('payment_service');
select set_config('fixture.i4', public.record_processor_inconsistency(
  'charge_unrecorded', 'pi_Lost4', '30000000-0000-4000-8000-000000000004', 99900, 'USD',
  'A charge for another amount') ->> 'id', true);
select results_eq(
  $$select a ->> 'recovery', a ->> 'refund_idempotency_key'
    from public.recover_processor_inconsistency(current_setting('fixture.i4')::uuid) as a$$,
  $$select 'refund', 'processor_inconsistency:' || current_setting('fixture.i4') || ':refund'$$,
  'the recovery decides to refund the charge'
);
select results_eq(
  $$select reason, payment_intent_id, amount_minor, idempotency_key from public.refunds_to_send()
    where processor_inconsistency_id = current_setting('fixture.i4')::uuid$$,
  $$select 'recovery', 'pi_Lost4', 99900::bigint,
    'processor_inconsistency:' || current_setting('fixture.i4') || ':refund'$$,
  'and owes it, under the key the recovery answered'
);
select is(
  public.apply_stripe_event(tests.stripe_event('charge.refunded', jsonb_build_object(
    'id', 'ch_Lost4', 'object', 'charge', 'payment_intent', 'pi_Lost4', 'amount', 99900,
    'amount_refunded', 99900, 'currency', 'usd'))) ->> 'status',
  'processed',
  'its charge.refunded is applied'
);
reset role;
select results_eq(
  $$select o.status, i.resolution is not null from private.refund_obligations as o
    join public.processor_inconsistencies as i on i.id = o.processor_inconsistency_id
    where i.id = current_setting('fixture.i4')::uuid$$,
  $$values ('confirmed', true)$$,
  'the refund is confirmed and the inconsistency settled'
);
select tests.authenticate_as_service('payment_service');
select set_config('fixture.i5', public.record_processor_inconsistency(
  'charge_unrecorded', 'pi_Lost5', '30000000-0000-4000-8000-000000000004', 88800, 'USD',
  'Another charge for another amount') ->> 'id', true);
select public.recover_processor_inconsistency(current_setting('fixture.i5')::uuid);
reset role;
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select public.resolve_processor_inconsistency(current_setting('fixture.i5')::uuid,
  'Refunded by hand from the dashboard, ticket 4411');
reset role;
select is(
  (select status from private.refund_obligations
    where processor_inconsistency_id = current_setting('fixture.i5')::uuid),
  'canceled',
  'a recovery settled otherwise before its refund was sent is no longer owed'
);

select * from finish();
rollback;
