-- Funding attempts: the payer opens one (begin_funding_attempt, as themselves: their own
-- payment, their own payment method, MFA from the threshold on); a retry gets the open attempt
-- and its idempotency key back, so the processor never charges twice; a new attempt only after
-- the last one failed. payment_service records the PaymentIntent (set once) and a decline
-- (idempotent with the webhook's report of it); the webhook's success must be the current
-- attempt's. Users write no attempt directly.
begin;
select plan(37);

-- the backend and staff roles may call pgTAP's assertions (rolled back with the test)
select tests.let_roles_call_pgtap();

-- fixtures, as postgres: hana pays carl for p1 (400.00 USD) and p2 (2000.00 USD, above the MFA
-- threshold); hana and bob each have a card
select tests.create_supabase_user('hana');
select tests.create_supabase_user('bob');
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
update private.settings set value = '0' where key = 'escrow_hold_seconds';
select tests.create_project_with_milestones(
  'hana',
  'carl',
  amounts => array[40000, 200000],
  titles => array['Cabinets', 'Counters']
);
insert into public.payment_methods (id, user_id, type, processor_payment_method_id_sealed, processor_payment_method_id_lookup, processor_customer_id_lookup)
values
('40000000-0000-4000-8000-000000000001', tests.get_supabase_uid('hana'), 'credit_card', tests.sealed_token(), tests.token_lookup('pm_HanaCard01'), tests.token_lookup('cus_HanaCust01')),
('40000000-0000-4000-8000-000000000002', tests.get_supabase_uid('hana'), 'credit_card', tests.sealed_token(), tests.token_lookup('pm_HanaCard02'), tests.token_lookup('cus_HanaCust01')),
('40000000-0000-4000-8000-000000000003', tests.get_supabase_uid('bob'), 'credit_card', tests.sealed_token(), tests.token_lookup('pm_BobCard001'), tests.token_lookup('cus_BobCust001'));

-- as hana, the payer
select tests.authenticate_as('hana');
select results_eq(
  $$select a ->> 'attempt', a ->> 'idempotency_key', a ->> 'amount_minor', a ->> 'currency',
      a ->> 'payment_method', a ->> 'payment_intent_id', a ? 'customer_id',
      a::text ~ '(cus|pm)_'
    from public.begin_funding_attempt('30000000-0000-4000-8000-000000000001',
      '40000000-0000-4000-8000-000000000001') as a$$,
  $$values ('1', 'milestone_payment:30000000-0000-4000-8000-000000000001:attempt:1', '40000',
    'USD', '40000000-0000-4000-8000-000000000001', null::text, false, false)$$,
  'the payer opens attempt 1, for exactly the payment''s amount and currency, with a key derived from the payment, naming her payment method by its row and no processor id'
);
select is(
  public.begin_funding_attempt('30000000-0000-4000-8000-000000000001',
    '40000000-0000-4000-8000-000000000001') ->> 'idempotency_key',
  'milestone_payment:30000000-0000-4000-8000-000000000001:attempt:1',
  'a retried request gets the open attempt and the same key back: the processor cannot charge twice'
);
select is(
  (select count(*)::int from public.funding_attempts),
  1,
  'and no second attempt was opened'
);
select throws_ok(
  $$select tests.raise_if_refused(public.begin_funding_attempt('30000000-0000-4000-8000-000000000001',
    '40000000-0000-4000-8000-000000000002'))$$,
  'PT409',
  'milestone payment 30000000-0000-4000-8000-000000000001 is being charged to another payment method (attempt 1)',
  'another card while an attempt is in flight is refused'
);
select throws_ok(
  $$select tests.raise_if_refused(public.begin_funding_attempt('30000000-0000-4000-8000-000000000001',
    '40000000-0000-4000-8000-000000000003'))$$,
  'PT404', 'no payment method 40000000-0000-4000-8000-000000000003 of yours',
  'another user''s payment method is refused'
);
select throws_ok(
  $$select tests.raise_if_refused(public.begin_funding_attempt('30000000-0000-4000-8000-000000000002',
    '40000000-0000-4000-8000-000000000001'))$$,
  'PT403', 'funding milestone payment 30000000-0000-4000-8000-000000000002 needs MFA (aal2)',
  'a payment above the MFA threshold needs aal2'
);
select throws_ok(
  $$insert into public.funding_attempts (
      milestone_payment_id, attempt, processor_payment_method_id_lookup,
      processor_customer_id_lookup, amount_minor, currency, idempotency_key
    )
    values ('30000000-0000-4000-8000-000000000002', 1, tests.token_lookup('pm_HanaCard01'),
      tests.token_lookup('cus_HanaCust01'), 1, 'USD', 'mine')$$,
  '42501', 'permission denied for table funding_attempts',
  'the payer cannot write an attempt of her choosing (an amount of 1) directly'
);
select throws_ok(
  $$select public.record_payment_intent('30000000-0000-4000-8000-000000000001', 1, 'pi_Forged01')$$,
  '42501', 'permission denied for function record_payment_intent',
  'the payer cannot record a PaymentIntent'
);
select throws_ok(
  $$select public.record_funding_failure('30000000-0000-4000-8000-000000000001', 1, 'x', 'y')$$,
  '42501', 'permission denied for function record_funding_failure',
  'nor a failure'
);
reset role;
select tests.authenticate_as('hana', aal => 'aal2');
select is(
  public.begin_funding_attempt('30000000-0000-4000-8000-000000000002',
    '40000000-0000-4000-8000-000000000002') ->> 'attempt',
  '1',
  'at aal2 the payer opens an attempt for the large payment'
);

-- as bob, a stranger: the same answer as for a payment that does not exist
reset role;
select tests.authenticate_as('bob', aal => 'aal2');
select throws_ok(
  $$select tests.raise_if_refused(public.begin_funding_attempt('30000000-0000-4000-8000-000000000001',
    '40000000-0000-4000-8000-000000000003'))$$,
  'PT404', 'no milestone payment 30000000-0000-4000-8000-000000000001 that you may fund',
  'a stranger cannot fund (or learn of) another user''s payment'
);
select is(
  (select count(*)::int from public.funding_attempts),
  0,
  'and sees no attempt of it'
);

-- as payment_service: the processor's answers
reset role;
select tests.authenticate_as_service('payment_service');
select throws_ok(
  $$select tests.raise_if_refused(public.begin_funding_attempt('30000000-0000-4000-8000-000000000001',
    '40000000-0000-4000-8000-000000000001'))$$,
  '42501', 'permission denied for function begin_funding_attempt',
  'payment_service does not open attempts: the payer does'
);
select is(
  public.record_payment_intent('30000000-0000-4000-8000-000000000001', 1, 'pi_Attempt1')
    ->> 'processor_payment_intent_id',
  'pi_Attempt1',
  'payment_service records the PaymentIntent of attempt 1'
);
select is(
  public.record_payment_intent('30000000-0000-4000-8000-000000000001', 1, 'pi_Attempt1')
    ->> 'processor_payment_intent_id',
  'pi_Attempt1',
  'recording the same one again changes nothing'
);
select throws_ok(
  $$select public.record_payment_intent('30000000-0000-4000-8000-000000000001', 1, 'pi_Other01')$$,
  'PT409',
  'funding attempt 1 of milestone payment 30000000-0000-4000-8000-000000000001 is PaymentIntent pi_Attempt1, not pi_Other01',
  'another PaymentIntent for the same attempt is refused'
);
select throws_ok(
  $$select public.record_payment_intent('30000000-0000-4000-8000-000000000001', 7, 'pi_Other01')$$,
  'PT404', 'no funding attempt 7 of milestone payment 30000000-0000-4000-8000-000000000001',
  'an attempt that does not exist is refused'
);
select results_eq(
  $$select a ->> 'status', a ->> 'failure_code'
    from public.record_funding_failure('30000000-0000-4000-8000-000000000001', 1,
      'card_declined', 'Your card was declined.') as a$$,
  $$values ('failed', 'card_declined')$$,
  'payment_service records a synchronous decline'
);
select is(
  (select status::text from public.milestone_payments where id = '30000000-0000-4000-8000-000000000001'),
  'failed',
  'which fails the payment'
);
select is(
  public.apply_stripe_event(tests.stripe_event('payment_intent.payment_failed',
    tests.payment_intent('pi_Attempt1', '30000000-0000-4000-8000-000000000001', 40000, extra =>
      '{"last_payment_error": {"code": "card_declined", "message": "Your card was declined."}}'))) ->> 'status',
  'processed',
  'the webhook''s report of the same decline is absorbed'
);
select results_eq(
  $$select count(*)::int, min(failure_code) from public.funding_attempts
    where milestone_payment_id = '30000000-0000-4000-8000-000000000001'$$,
  $$values (1, 'card_declined')$$,
  'the decline is recorded once'
);

-- a new attempt after the failure, with a new key; only its PaymentIntent funds the payment
reset role;
select tests.authenticate_as('hana');
select results_eq(
  $$select a ->> 'attempt', a ->> 'idempotency_key', a ->> 'payment_method'
    from public.begin_funding_attempt('30000000-0000-4000-8000-000000000001',
      '40000000-0000-4000-8000-000000000002') as a$$,
  $$values ('2', 'milestone_payment:30000000-0000-4000-8000-000000000001:attempt:2',
    '40000000-0000-4000-8000-000000000002')$$,
  'after a failure the payer opens attempt 2, with another card and a new key'
);
reset role;
select tests.authenticate_as_service('payment_service');
select is(
  public.record_payment_intent('30000000-0000-4000-8000-000000000001', 2, 'pi_Attempt2')
    ->> 'attempt',
  '2',
  'payment_service records attempt 2''s PaymentIntent'
);
select results_eq(
  $$select a ->> 'status', a -> 'error' ->> 'message'
    from public.apply_stripe_event(tests.stripe_event('payment_intent.succeeded',
      tests.payment_intent('pi_Attempt1', '30000000-0000-4000-8000-000000000001', 40000))) as a$$,
  $$values ('refused',
    'PaymentIntent pi_Attempt1 is attempt 1 of milestone payment 30000000-0000-4000-8000-000000000001, not its current attempt 2')$$,
  'a late success of the failed attempt 1 is refused: attempt 2 is in flight'
);
select is(
  (select kind from public.processor_inconsistencies where processor_object_id = 'pi_Attempt1'),
  'charge_refused',
  'and its charge is an open inconsistency, to be refunded'
);
select results_eq(
  $$select a ->> 'status', a -> 'error' ->> 'code'
    from public.apply_stripe_event(tests.stripe_event('payment_intent.succeeded',
      tests.payment_intent('pi_Stranger1', '30000000-0000-4000-8000-000000000001', 40000))) as a$$,
  $$values ('refused', 'PT409')$$,
  'a success of a PaymentIntent no attempt recorded is refused'
);
select is(
  public.apply_stripe_event(tests.stripe_event('payment_intent.succeeded',
    tests.payment_intent('pi_Attempt2', '30000000-0000-4000-8000-000000000001', 40000))) ->> 'status',
  'processed',
  'attempt 2''s success is applied'
);
select results_eq(
  $$select mp.status::text, mp.processor_payment_intent_id, a.status
    from public.milestone_payments as mp
    join public.funding_attempts as a on a.milestone_payment_id = mp.id and a.attempt = 2
    where mp.id = '30000000-0000-4000-8000-000000000001'$$,
  $$values ('funded', 'pi_Attempt2', 'succeeded')$$,
  'the payment is funded by attempt 2, which succeeded'
);
select throws_ok(
  $$select public.record_funding_failure('30000000-0000-4000-8000-000000000001', 2, 'late', 'late')$$,
  'PT409',
  'funding attempt 2 of milestone payment 30000000-0000-4000-8000-000000000001 succeeded: it does not fail',
  'a succeeded attempt does not fail afterwards'
);

-- a funded payment takes no new attempt
reset role;
select tests.authenticate_as('hana');
select throws_ok(
  $$select tests.raise_if_refused(public.begin_funding_attempt('30000000-0000-4000-8000-000000000001',
    '40000000-0000-4000-8000-000000000001'))$$,
  'PT409',
  'milestone payment 30000000-0000-4000-8000-000000000001 is funded: only a pending or failed payment is funded',
  'a funded payment is not charged again'
);

-- the payee does not read the attempts to charge the payer
reset role;
select tests.authenticate_as('carl', aal => 'aal2');
select is(
  (select count(*)::int from public.funding_attempts),
  0,
  'the payee reads none of the attempts to charge the payer'
);

-- a failed payment: the payer may cancel it, the payee may not
reset role;
select tests.authenticate_as_service('payment_service');
select public.record_payment_intent('30000000-0000-4000-8000-000000000002', 1, 'pi_Large01');
select public.record_funding_failure('30000000-0000-4000-8000-000000000002', 1,
  'authentication_required', 'The payer did not complete 3-D Secure.');
reset role;
select tests.authenticate_as('carl');
select results_eq(
  $$with changed as (
      update public.milestone_payments set status = 'canceled'
      where id = '30000000-0000-4000-8000-000000000002' returning 1
    ) select count(*)::int from changed$$,
  $$values (0)$$,
  'the payee cannot cancel a failed payment'
);
reset role;
select tests.authenticate_as('hana', aal => 'aal2');
select is(
  (select status::text from public.milestone_payments where id = '30000000-0000-4000-8000-000000000002'),
  'failed',
  'the payer sees her payment failed'
);
select is(
  tests.raise_if_refused(public.cancel_milestone_payment(
    '30000000-0000-4000-8000-000000000002', 'hana-cancel-2')) ->> 'status',
  'canceled',
  'and may cancel it rather than try again'
);

-- an attempt is a record: what it charged, how it ended never change, not even for the owner
reset role;
select throws_ok(
  $$update public.funding_attempts set amount_minor = 1
    where milestone_payment_id = '30000000-0000-4000-8000-000000000002'$$,
  'PT409',
  'funding attempt 1 of milestone payment 30000000-0000-4000-8000-000000000002: what it charges never changes',
  'an attempt''s amount never changes'
);
select throws_ok(
  $$update public.funding_attempts set status = 'failed'
    where milestone_payment_id = '30000000-0000-4000-8000-000000000001' and attempt = 2$$,
  'PT409',
  'funding attempt 2 of milestone payment 30000000-0000-4000-8000-000000000001 has succeeded: it ends once',
  'a second end is refused: a succeeded attempt stays succeeded'
);
select throws_ok(
  $$delete from public.funding_attempts
    where milestone_payment_id = '30000000-0000-4000-8000-000000000002'$$,
  'PT409', null,
  'an attempt is never deleted'
);

select * from finish();
rollback;
