-- An open attempt whose PaymentIntent waits for 3-D Secure (its card then deleted) no longer
-- blocks its payment: another payment method gets that attempt back with cancel_to_replace,
-- the function cancels the intent at Stripe and records the attempt as failed, and the next
-- request opens the next attempt. Until that record, no second attempt opens; the canceled
-- intent's webhook changes nothing more; and should the old intent succeed all the same, its
-- success funds nothing beside the new attempt's: it is refused and reported, recovery refunds.
begin;
select plan(12);

select tests.let_roles_call_pgtap('payment_service');

select tests.create_supabase_user('hana');
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
select tests.create_project_payments('hana', 'carl', 1);
insert into public.payment_methods (id, user_id, type, processor_payment_method_id_sealed, processor_payment_method_id_lookup, processor_customer_id_lookup)
values
('40000000-0000-4000-8000-000000000001', tests.get_supabase_uid('hana'), 'credit_card', tests.sealed_token(), tests.token_lookup('pm_HanaThreeDS1'), tests.token_lookup('cus_HanaCust01')),
('40000000-0000-4000-8000-000000000002', tests.get_supabase_uid('hana'), 'credit_card', tests.sealed_token(), tests.token_lookup('pm_HanaVisa0001'), tests.token_lookup('cus_HanaCust01'));

-- attempt 1 with card 1: its PaymentIntent is recorded and waits for 3-D Secure; the card is deleted
select tests.authenticate_as('hana');
select tests.raise_if_refused(public.begin_funding_attempt(
  '30000000-0000-4000-8000-000000000001', '40000000-0000-4000-8000-000000000001'));
reset role;
select tests.authenticate_as_service('payment_service');
select tests.raise_if_refused(public.record_payment_intent(
  '30000000-0000-4000-8000-000000000001', 1, 'pi_ThreeDSecureOld1'));
reset role;
delete from public.payment_methods where id = '40000000-0000-4000-8000-000000000001';

select tests.authenticate_as('hana');
select is(
  public.begin_funding_attempt(
    '30000000-0000-4000-8000-000000000001', '40000000-0000-4000-8000-000000000001') ->> 'code',
  'PT404',
  'the deleted card itself cannot be asked for again'
);
select set_config('response.status', '', true);
select is(
  (select jsonb_build_array(a -> 'attempt', a -> 'status', a -> 'payment_intent_id',
      a -> 'cancel_to_replace', a -> 'idempotency_key')
    from tests.raise_if_refused(public.begin_funding_attempt(
      '30000000-0000-4000-8000-000000000001', '40000000-0000-4000-8000-000000000002')) as a),
  '[1, "open", "pi_ThreeDSecureOld1", true, "milestone_payment:30000000-0000-4000-8000-000000000001:attempt:1"]'::jsonb,
  'another card gets the open attempt back, to cancel its intent first: nothing opened beside it'
);
select is(
  (select a -> 'cancel_to_replace'
    from tests.raise_if_refused(public.begin_funding_attempt(
      '30000000-0000-4000-8000-000000000001', '40000000-0000-4000-8000-000000000002')) as a),
  'true'::jsonb,
  'asked again before the cancellation is recorded: still the same open attempt'
);
reset role;
select is(
  (select count(*)::int from public.funding_attempts
    where milestone_payment_id = '30000000-0000-4000-8000-000000000001'),
  1,
  'one attempt, open: never two live charges for one payment'
);

-- the function canceled the intent at Stripe: it records the attempt as failed
select tests.authenticate_as_service('payment_service');
select tests.raise_if_refused(public.record_funding_failure(
  '30000000-0000-4000-8000-000000000001', 1, 'canceled',
  'Canceled at the processor: the payer chose another payment method'));
reset role;
select tests.authenticate_as('hana');
select is(
  (select jsonb_build_array(a -> 'attempt', a -> 'status', a -> 'payment_intent_id',
      a -> 'cancel_to_replace', a -> 'payment_method')
    from tests.raise_if_refused(public.begin_funding_attempt(
      '30000000-0000-4000-8000-000000000001', '40000000-0000-4000-8000-000000000002')) as a),
  '[2, "open", null, false, "40000000-0000-4000-8000-000000000002"]'::jsonb,
  'once the old attempt failed, the other card opens attempt 2'
);
reset role;

-- Stripe's payment_intent.canceled for the old intent arrives: nothing changes
select tests.authenticate_as_service('payment_service');
select is(
  public.apply_stripe_event(tests.stripe_event('payment_intent.canceled',
    tests.payment_intent('pi_ThreeDSecureOld1', '30000000-0000-4000-8000-000000000001', 10000,
      extra => '{"status": "canceled", "cancellation_reason": "requested_by_customer", "metadata": {"milestone_payment_id": "30000000-0000-4000-8000-000000000001", "funding_attempt": "1"}}'))) ->> 'status',
  'processed',
  'the old intent''s cancellation is applied'
);
reset role;
select results_eq(
  $$select attempt, status, failure_code from public.funding_attempts
    where milestone_payment_id = '30000000-0000-4000-8000-000000000001' order by attempt$$,
  $$values (1, 'failed', 'canceled'), (2, 'open', null::text)$$,
  'attempt 1 failed once, attempt 2 still open'
);

-- attempt 2 is charged and funds the payment; a success of the old intent (were Stripe to
-- report one) is refused
select tests.authenticate_as_service('payment_service');
select tests.raise_if_refused(public.record_payment_intent(
  '30000000-0000-4000-8000-000000000001', 2, 'pi_SecondCardNew1'));
select is(
  public.apply_stripe_event(tests.stripe_event('payment_intent.succeeded',
    tests.payment_intent('pi_SecondCardNew1', '30000000-0000-4000-8000-000000000001', 10000,
      extra => '{"metadata": {"milestone_payment_id": "30000000-0000-4000-8000-000000000001", "funding_attempt": "2"}}'))) ->> 'status',
  'processed',
  'attempt 2''s success funds the payment'
);
select is(
  public.apply_stripe_event(tests.stripe_event('payment_intent.succeeded',
    tests.payment_intent('pi_ThreeDSecureOld1', '30000000-0000-4000-8000-000000000001', 10000,
      extra => '{"metadata": {"milestone_payment_id": "30000000-0000-4000-8000-000000000001", "funding_attempt": "1"}}'))) ->> 'status',
  'refused',
  'a success of the replaced attempt''s intent is refused'
);
reset role;
select results_eq(
  $$select processor_payment_intent_id, status::text from public.milestone_payments
    where id = '30000000-0000-4000-8000-000000000001'$$,
  $$values ('pi_SecondCardNew1', 'funded')$$,
  'the payment is funded by attempt 2 alone'
);
select results_eq(
  $$select kind::text, resolution is null from public.processor_inconsistencies
    where processor_object_id = 'pi_ThreeDSecureOld1'$$,
  $$values ('charge_refused', true)$$,
  'the old intent''s charge is reported, open'
);
select tests.authenticate_as_service('payment_service');
select is(
  public.recover_processor_inconsistency((select id from public.processor_inconsistencies
    where processor_object_id = 'pi_ThreeDSecureOld1')) ->> 'recovery',
  'refund',
  'and its recovery is a refund'
);
reset role;

select * from finish();
rollback;
