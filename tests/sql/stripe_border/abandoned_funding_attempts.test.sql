-- An open funding attempt that recorded no PaymentIntent does not block its payment for good:
-- when the payer asks with another payment method (hers was deleted, or she chose another)
-- more than a minute after it opened, it is abandoned (failed, 'abandoned') and the next
-- attempt, with the next key, is opened. Sooner, another method is refused as before; once an
-- intent is recorded, the attempt stays open (its intent must be canceled first). A late
-- success of the abandoned attempt's intent funds nothing twice: it is refused and reported,
-- and its recovery is a refund.
begin;
select plan(16);

select tests.let_roles_call_pgtap('payment_service');

select tests.create_supabase_user('hana');
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
select tests.create_project_payments('hana', 'carl', 2);
insert into public.payment_methods (id, user_id, type, processor_payment_method_id_sealed, processor_payment_method_id_lookup, processor_customer_id_lookup)
values
('40000000-0000-4000-8000-000000000001', tests.get_supabase_uid('hana'), 'credit_card', tests.sealed_token(), tests.token_lookup('pm_HanaCard01'), tests.token_lookup('cus_HanaCust01')),
('40000000-0000-4000-8000-000000000002', tests.get_supabase_uid('hana'), 'credit_card', tests.sealed_token(), tests.token_lookup('pm_HanaCard02'), tests.token_lookup('cus_HanaCust01')),
('40000000-0000-4000-8000-000000000003', tests.get_supabase_uid('hana'), 'credit_card', tests.sealed_token(), tests.token_lookup('pm_HanaCard03'), tests.token_lookup('cus_HanaCust01'));

/** An attempt opened `age` ago (created_at is kept by a trigger: moved here as postgres). */
create function pg_temp.age_attempt(payment uuid, attempt integer, age interval) returns void
language sql as $$
  alter table public.funding_attempts disable trigger keep_row_timestamps;
  update public.funding_attempts as a set created_at = now() - age
  where a.milestone_payment_id = payment and a.attempt = age_attempt.attempt;
  alter table public.funding_attempts enable trigger keep_row_timestamps;
$$;

-- p1: attempt 1 with card 1 never got a PaymentIntent recorded
select tests.authenticate_as('hana');
select tests.raise_if_refused(public.begin_funding_attempt(
  '30000000-0000-4000-8000-000000000001', '40000000-0000-4000-8000-000000000001'));
select is(
  public.begin_funding_attempt('30000000-0000-4000-8000-000000000001',
    '40000000-0000-4000-8000-000000000002') - 'details',
  jsonb_build_object(
    'code', 'PT409',
    'message', 'milestone payment 30000000-0000-4000-8000-000000000001 is being charged to another payment method (attempt 1)',
    'hint', 'retry with the same payment method, or with another one in a minute'
  ),
  'within a minute of the attempt, another card is refused: its charge may be in flight'
);
select set_config('response.status', '', true);
reset role;
select pg_temp.age_attempt('30000000-0000-4000-8000-000000000001', 1, interval '61 seconds');
select tests.authenticate_as('hana');
select results_eq(
  $$select a ->> 'attempt', a ->> 'idempotency_key', a ->> 'payment_method'
    from tests.raise_if_refused(public.begin_funding_attempt(
      '30000000-0000-4000-8000-000000000001', '40000000-0000-4000-8000-000000000002')) as a$$,
  $$values ('2', 'milestone_payment:30000000-0000-4000-8000-000000000001:attempt:2',
    '40000000-0000-4000-8000-000000000002')$$,
  'a minute later, another card opens attempt 2, under the next key'
);
reset role;
select results_eq(
  $$select attempt, status, failure_code, failure_message, idempotency_key
    from public.funding_attempts
    where milestone_payment_id = '30000000-0000-4000-8000-000000000001' order by attempt$$,
  $$values
    (1, 'failed', 'abandoned',
      'Abandoned: the payer asked again with another payment method before any charge was recorded',
      'milestone_payment:30000000-0000-4000-8000-000000000001:attempt:1'),
    (2, 'open', null, null, 'milestone_payment:30000000-0000-4000-8000-000000000001:attempt:2')$$,
  'attempt 1 is abandoned, saying why; its key is never handed out again'
);
select is(
  (select status::text from public.milestone_payments where id = '30000000-0000-4000-8000-000000000001'),
  'pending',
  'the payment itself did not fail'
);
select tests.authenticate_as('hana');
select is(
  public.begin_funding_attempt(
    '30000000-0000-4000-8000-000000000001', '40000000-0000-4000-8000-000000000001') ->> 'code',
  'PT409',
  'now card 1 is the other method: refused while attempt 2 is young'
);
select set_config('response.status', '', true);
reset role;

-- attempt 2 is charged (pi_Second) and funded; then the abandoned attempt's intent succeeds late
select tests.authenticate_as_service('payment_service');
select tests.raise_if_refused(public.record_payment_intent(
  '30000000-0000-4000-8000-000000000001', 2, 'pi_SecondCharge01'));
select is(
  public.apply_stripe_event(tests.stripe_event('payment_intent.succeeded',
    tests.payment_intent('pi_SecondCharge01', '30000000-0000-4000-8000-000000000001', 10000,
      extra => '{"metadata": {"milestone_payment_id": "30000000-0000-4000-8000-000000000001", "funding_attempt": "2"}}'))) ->> 'status',
  'processed',
  'attempt 2''s success funds the payment'
);
select is(
  public.apply_stripe_event(tests.stripe_event('payment_intent.succeeded',
    tests.payment_intent('pi_AbandonedLate01', '30000000-0000-4000-8000-000000000001', 10000,
      extra => '{"metadata": {"milestone_payment_id": "30000000-0000-4000-8000-000000000001", "funding_attempt": "1"}}'))) ->> 'status',
  'refused',
  'a late success of the abandoned attempt''s intent is refused'
);
reset role;
select results_eq(
  $$select processor_payment_intent_id, status::text from public.milestone_payments
    where id = '30000000-0000-4000-8000-000000000001'$$,
  $$values ('pi_SecondCharge01', 'funded')$$,
  'the payment stays funded by attempt 2 alone'
);
select is(
  (select count(*)::int from public.payment_transactions
    where processor_transaction_id in ('pi_SecondCharge01', 'pi_AbandonedLate01')
      and type = 'charge'),
  1,
  'one charge in the ledger, attempt 2''s'
);
select results_eq(
  $$select kind::text, resolution is null from public.processor_inconsistencies
    where processor_object_id = 'pi_AbandonedLate01'$$,
  $$values ('charge_refused', true)$$,
  'the late charge is reported, open'
);
select tests.authenticate_as_service('payment_service');
select is(
  public.recover_processor_inconsistency((select id from public.processor_inconsistencies
    where processor_object_id = 'pi_AbandonedLate01')) ->> 'recovery',
  'refund',
  'and its recovery is a refund'
);
reset role;

-- p2: attempt 1 with card 3, which hana then deletes; an attempt with an intent is waited for
select tests.authenticate_as('hana');
select tests.raise_if_refused(public.begin_funding_attempt(
  '30000000-0000-4000-8000-000000000002', '40000000-0000-4000-8000-000000000003'));
reset role;
delete from public.payment_methods where id = '40000000-0000-4000-8000-000000000003';
select pg_temp.age_attempt('30000000-0000-4000-8000-000000000002', 1, interval '2 minutes');
select tests.authenticate_as('hana');
select is(
  tests.raise_if_refused(public.begin_funding_attempt(
    '30000000-0000-4000-8000-000000000002', '40000000-0000-4000-8000-000000000002')) ->> 'attempt',
  '2',
  'an attempt whose card was deleted is abandoned on the next request'
);
reset role;
select is(
  (select failure_message from public.funding_attempts
    where milestone_payment_id = '30000000-0000-4000-8000-000000000002' and attempt = 1),
  'Abandoned: its payment method was deleted before any charge was recorded',
  'saying so'
);
select tests.authenticate_as_service('payment_service');
select tests.raise_if_refused(public.record_payment_intent(
  '30000000-0000-4000-8000-000000000002', 2, 'pi_ThreeDSecure01'));
reset role;
select pg_temp.age_attempt('30000000-0000-4000-8000-000000000002', 2, interval '1 hour');
select tests.authenticate_as('hana');
select is(
  (select jsonb_build_array(a -> 'attempt', a -> 'status', a -> 'payment_intent_id', a -> 'cancel_to_replace')
    from tests.raise_if_refused(public.begin_funding_attempt('30000000-0000-4000-8000-000000000002',
      '40000000-0000-4000-8000-000000000001')) as a),
  '[2, "open", "pi_ThreeDSecure01", true]'::jsonb,
  'an open attempt with a PaymentIntent recorded is never abandoned: it may still be charged, so its intent must be canceled first (superseded_funding_attempts.test.sql)'
);
select is(
  tests.raise_if_refused(public.begin_funding_attempt(
    '30000000-0000-4000-8000-000000000002', '40000000-0000-4000-8000-000000000002')) ->> 'payment_intent_id',
  'pi_ThreeDSecure01',
  'its own card still finds it'
);
reset role;
select is(
  (select count(*)::int from public.funding_attempts
    where milestone_payment_id = '30000000-0000-4000-8000-000000000002'),
  2,
  'and no attempt was opened beside it'
);

select * from finish();
rollback;
