-- Whose event it is: payment_intent.*, charge.* and chargeback events are the platform's own
-- and carry no `account` (refused otherwise, an inconsistency recorded when money moved,
-- which no recovery funds from); payout.* events move only the withdrawal that recorded the
-- payout, from its payout method's connected account (a payout no withdrawal records is
-- ignored, whatever its metadata names); account.updated updates the
-- account it is about. Card-like text in an event is redacted from what is stored and the
-- event still applied; every refused money event records an inconsistency; a body that is
-- not a JSON object is PT422.
begin;
select plan(36);

-- Its payout methods are new and withdrawn to at once: their cool-down is lifted (the
-- cool-down's own tests: withdrawals/payout_method_cool_down.test.sql).
update private.settings set value = '0' where key = 'payout_method_cool_down_seconds';

select tests.let_roles_call_pgtap();

-- fixtures, as postgres: hana pays carl (p1, p2, p3 pending); carl and eve each have a payout
-- method and an approved withdrawal
update private.settings set value = (
  select jsonb_object_agg(level, jsonb_build_object('calls', 1000, 'seconds', 60))
  from unnest(array['low', 'medium', 'high']) as level
)
where key = 'velocity_limits';
select tests.create_supabase_user('hana');
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
select tests.create_supabase_user('eve', metadata => '{"role": "contractor"}');
select tests.create_project_payments('hana', 'carl', 3);
insert into public.payout_methods (id, user_id, type, processor_account_id_lookup, processor_external_account_id_sealed, processor_external_account_id_lookup, currency)
values
('c0000000-0000-4000-8000-0000000000c1', tests.get_supabase_uid('carl'), 'bank_account',
  tests.token_lookup('acct_1CarlStd'), tests.sealed_token(), tests.token_lookup('ba_1CarlStd'), 'USD'),
('c0000000-0000-4000-8000-0000000000e1', tests.get_supabase_uid('eve'), 'bank_account',
  tests.token_lookup('acct_1EveExp'), tests.sealed_token(), tests.token_lookup('ba_1EveExp'), 'USD');
select tests.verify_connected_account('acct_1CarlStd');
select tests.verify_connected_account('acct_1EveExp');
select tests.fund_wallet(tests.get_supabase_uid('carl'), 50000);
select tests.fund_wallet(tests.get_supabase_uid('eve'), 50000);
insert into public.withdrawals (id, user_id, payout_method_id, amount_minor, currency)
values
('d0000000-0000-4000-8000-0000000000c1', tests.get_supabase_uid('carl'),
  'c0000000-0000-4000-8000-0000000000c1', 10000, 'USD'),
('d0000000-0000-4000-8000-0000000000e1', tests.get_supabase_uid('eve'),
  'c0000000-0000-4000-8000-0000000000e1', 20000, 'USD');

select tests.authenticate_as_service('payment_service');

-- a PaymentIntent on a connected account funds nothing, whatever its metadata says
select results_eq(
  $$select a ->> 'status', a -> 'error' ->> 'code'
    from public.apply_stripe_event(tests.stripe_event('payment_intent.succeeded',
      tests.payment_intent('pi_OnCarlsAccount1', '30000000-0000-4000-8000-000000000001', 10000),
      'evt_ConnectedPi01') || jsonb_build_object('account', tests.token_lookup('acct_1CarlStd'))) as a$$,
  $$values ('refused', 'PT403')$$,
  'a payment_intent.succeeded of a connected account is refused'
);
select is(
  (select status::text from public.milestone_payments where id = '30000000-0000-4000-8000-000000000001'),
  'pending',
  'and the payment it names stays pending'
);
select results_eq(
  $$select kind, milestone_payment_id, amount_minor, currency::text, resolution,
      webhook_event_id
    from public.processor_inconsistencies where processor_object_id = 'pi_OnCarlsAccount1'$$,
  $$values ('connected_account_event', null::uuid, 10000::bigint, 'USD', null::text,
    'evt_ConnectedPi01')$$,
  'the money it moved is recorded as an open inconsistency that names no payment'
);
select throws_like(
  $$select public.recover_processor_inconsistency((select id from public.processor_inconsistencies
    where processor_object_id = 'pi_OnCarlsAccount1'))$$,
  '%is not a charge of a milestone payment: operations settle it',
  'which no recovery funds the payment from'
);
select is(
  public.apply_stripe_event(tests.stripe_event('payment_intent.succeeded',
    tests.payment_intent('pi_Platform01', '30000000-0000-4000-8000-000000000001', 10000))
    || '{"account": null}') ->> 'status',
  'processed',
  'the platform''s own PaymentIntent (no account) funds it'
);
select results_eq(
  $$select a ->> 'status', a -> 'error' ->> 'code'
    from public.apply_stripe_event(tests.stripe_event('charge.refunded', jsonb_build_object(
      'id', 'ch_OnCarls01', 'object', 'charge', 'payment_intent', 'pi_Platform01',
      'amount', 10000, 'amount_refunded', 10000, 'currency', 'usd'))
      || jsonb_build_object('account', tests.token_lookup('acct_1CarlStd'))) as a$$,
  $$values ('refused', 'PT403')$$,
  'a charge.refunded of a connected account is refused'
);
select results_eq(
  $$select a ->> 'status', a -> 'error' ->> 'code'
    from public.apply_stripe_event(tests.stripe_event('charge.dispute.created',
      tests.stripe_dispute('dp_OnCarls01', 'pi_Platform01', 10000))
      || jsonb_build_object('account', tests.token_lookup('acct_1CarlStd'))) as a$$,
  $$values ('refused', 'PT403')$$,
  'so is a chargeback of a connected account'
);
select results_eq(
  $$select a ->> 'status', a -> 'error' ->> 'code'
    from public.apply_stripe_event(tests.stripe_event('payment_intent.payment_failed',
      tests.payment_intent('pi_OnCarlsAccount2', '30000000-0000-4000-8000-000000000002', 20000))
      || jsonb_build_object('account', tests.token_lookup('acct_1CarlStd'))) as a$$,
  $$values ('refused', 'PT403')$$,
  'and a payment failure of a connected account'
);
select results_eq(
  $$select mp.status::text, d.id is null
    from public.milestone_payments as mp left join public.disputes as d on d.milestone_payment_id = mp.id
    where mp.id in ('30000000-0000-4000-8000-000000000001', '30000000-0000-4000-8000-000000000002')
    order by mp.id$$,
  $$values ('funded', true), ('pending', true)$$,
  'the payments are as they were'
);
select results_eq(
  $$select kind, processor_object_id from public.processor_inconsistencies
    where kind = 'connected_account_event' order by processor_object_id$$,
  $$values ('connected_account_event', 'ch_OnCarls01'), ('connected_account_event', 'dp_OnCarls01'),
    ('connected_account_event', 'pi_OnCarlsAccount1')$$,
  'each refused money event of a connected account is an inconsistency; the failure moved none'
);

-- a payout moves only the withdrawal that recorded it, and only from that withdrawal's
-- connected account: metadata naming a withdrawal moves nothing
select results_eq(
  $$select a ->> 'status', a -> 'error' ->> 'code'
    from public.apply_stripe_event(tests.stripe_event('payout.failed', '{"id": "po_Carls01",
      "object": "payout", "amount": 20000, "currency": "usd",
      "metadata": {"withdrawal_id": "d0000000-0000-4000-8000-0000000000e1"}}')
      || jsonb_build_object('account', tests.token_lookup('acct_1CarlStd'))) as a$$,
  $$values ('ignored', null::text)$$,
  'a payout of another connected account naming eve''s withdrawal in its metadata is ignored'
);
select results_eq(
  $$select a ->> 'status', a -> 'error' ->> 'code'
    from public.apply_stripe_event(tests.stripe_event('payout.failed', '{"id": "po_Platform01",
      "object": "payout", "amount": 20000, "currency": "usd",
      "metadata": {"withdrawal_id": "d0000000-0000-4000-8000-0000000000e1"}}')) as a$$,
  $$values ('ignored', null::text)$$,
  'so is a payout of the platform''s own balance'
);
select public.record_withdrawal_transfer('d0000000-0000-4000-8000-0000000000e1', 'tr_Eve01');
select public.record_withdrawal_payout('d0000000-0000-4000-8000-0000000000e1', 'po_Eve01');
select results_eq(
  $$select a ->> 'status', a -> 'error' ->> 'code'
    from public.apply_stripe_event(tests.stripe_event('payout.paid', '{"id": "po_Eve01",
      "object": "payout", "amount": 20000, "currency": "usd"}')
      || jsonb_build_object('account', tests.token_lookup('acct_1CarlStd'))) as a$$,
  $$values ('refused', 'PT403')$$,
  'and one with the recorded payout id but another account is refused'
);
select results_eq(
  $$select status::text, processor_payout_id from public.withdrawals
    where id = 'd0000000-0000-4000-8000-0000000000e1'$$,
  $$values ('processing', 'po_Eve01')$$,
  'eve''s withdrawal is not paid by them'
);
select results_eq(
  $$select kind, processor_object_id, webhook_event_id is not null from public.processor_inconsistencies
    where kind = 'payout_refused' order by processor_object_id$$,
  $$values ('payout_refused', 'po_Eve01', true)$$,
  'the refused payout is an inconsistency operations see; the ignored ones open none'
);
select is(
  public.apply_stripe_event(tests.stripe_event('payout.paid', '{"id": "po_Eve01",
    "object": "payout", "amount": 20000, "currency": "usd"}')
    || jsonb_build_object('account', tests.token_lookup('acct_1EveExp'))) ->> 'status',
  'processed',
  'the payout of eve''s own account completes her withdrawal'
);
select is(
  public.apply_stripe_event(tests.stripe_event('payout.paid', '{"id": "po_Carl01",
    "object": "payout", "amount": 10000, "currency": "usd",
    "metadata": {"withdrawal_id": "d0000000-0000-4000-8000-0000000000c1"}}')
    || jsonb_build_object('account', tests.token_lookup('acct_1CarlStd'))) ->> 'status',
  'ignored',
  'carl''s payout.paid, before its payout is recorded, is kept'
);
select public.record_withdrawal_transfer('d0000000-0000-4000-8000-0000000000c1', 'tr_Carl01');
select public.record_withdrawal_payout('d0000000-0000-4000-8000-0000000000c1', 'po_Carl01');
select results_eq(
  $$select id::text, status::text from public.withdrawals
    where id in ('d0000000-0000-4000-8000-0000000000c1', 'd0000000-0000-4000-8000-0000000000e1')
    order by id$$,
  $$values ('d0000000-0000-4000-8000-0000000000c1', 'paid'),
    ('d0000000-0000-4000-8000-0000000000e1', 'paid')$$,
  'both are paid: carl''s once his payout was recorded'
);

-- account.updated is about the account it names, from that account
select results_eq(
  $$select a ->> 'status', a -> 'error' ->> 'code'
    from public.apply_stripe_event(tests.stripe_event('account.updated', '{"id": "acct_1EveExp",
      "object": "account", "payouts_enabled": false,
      "requirements": {"disabled_reason": "rejected.fraud"}}')
      || jsonb_build_object('account', tests.token_lookup('acct_1CarlStd'))) as a$$,
  $$values ('refused', 'PT403')$$,
  'an account.updated from one account about another is refused'
);
select is(
  (select verification_status from public.payout_methods where id = 'c0000000-0000-4000-8000-0000000000e1'),
  'verified',
  'and changes nothing'
);
select is(
  public.apply_stripe_event(tests.stripe_event('account.updated', '{"id": "acct_1EveExp",
    "object": "account", "payouts_enabled": false,
    "requirements": {"disabled_reason": "requirements.past_due"}}')
    || jsonb_build_object('account', tests.token_lookup('acct_1EveExp'))) ->> 'status',
  'processed',
  'an account.updated from the account it is about is applied'
);
select is(
  (select verification_status from public.payout_methods where id = 'c0000000-0000-4000-8000-0000000000e1'),
  'pending',
  'its payout method is pending'
);

-- card-like text the payer controls is redacted, and the event still applied
select results_eq(
  $$select a ->> 'status', a ->> 'error'
    from public.apply_stripe_event(tests.stripe_event('charge.refunded', jsonb_build_object(
      'id', 'ch_Platform01', 'object', 'charge', 'payment_intent', 'pi_Platform01',
      'amount', 10000, 'amount_refunded', 10000, 'currency', 'usd',
      'billing_details', jsonb_build_object('name', 'Hana 4000 0566 5566 5556'),
      'refunds', jsonb_build_object('data', jsonb_build_array(jsonb_build_object(
        'id', 're_Platform01', 'object', 'refund', 'amount', 10000)))),
      'evt_CardName01')) as a$$,
  $$values ('processed', null::text)$$,
  'a refund whose billing name holds a card number is applied'
);
select results_eq(
  $$select status::text from public.milestone_payments
    where id = '30000000-0000-4000-8000-000000000001'$$,
  $$values ('refunded')$$,
  'the payment is refunded'
);
select results_eq(
  $$select strpos(payload::text, '5556') = 0,
      payload #>> '{data,object,billing_details,name}',
      payload #>> '{data,object,payment_intent}', payload #>> '{data,object,refunds,data,0,id}'
    from public.webhook_events where id = 'evt_CardName01'$$,
  $$values (true, '[removed: it held card data]', 'pi_Platform01', 're_Platform01')$$,
  'the event is stored without the card number, with its ids'
);
select is(
  private.event_without_card_data('{"a": [4, 2, 4, 2, 4, 2, 4, 2, 4, 2, 4, 2, 4, 2, 4, 2], "cvc": "123", "b": "x"}'),
  '{"a": "[removed: it held card data]", "b": "x"}'::jsonb,
  'digits spread over an array are removed whole, and a verification value''s key dropped'
);
select is(
  private.event_without_card_data('{"id": "pi_Plain01", "amount": 10000}'),
  '{"id": "pi_Plain01", "amount": 10000}'::jsonb,
  'an event with no card data is stored as it is'
);

-- every refused money event is an inconsistency, whatever the refusal
select results_eq(
  $$select a ->> 'status', a -> 'error' ->> 'code', a ? 'inconsistency_id'
    from public.apply_stripe_event(tests.stripe_event('charge.refunded', jsonb_build_object(
      'id', 'ch_Unknown01', 'object', 'charge', 'payment_intent', 'pi_Unknown01',
      'amount', 3000, 'amount_refunded', 3000, 'currency', 'usd'))) as a$$,
  $$values ('refused', 'PT404', true)$$,
  'a refund of a charge no payment knows is refused and reported'
);
select results_eq(
  $$select kind, amount_minor, currency::text, resolution from public.processor_inconsistencies
    where processor_object_id = 'ch_Unknown01'$$,
  $$values ('refund_refused', 3000::bigint, 'USD', null::text)$$,
  'as an open refund_refused inconsistency'
);
select results_eq(
  $$select a ->> 'status', a -> 'error' ->> 'code', a ? 'inconsistency_id'
    from public.apply_stripe_event(tests.stripe_event('payment_intent.succeeded',
      tests.payment_intent('pi_WrongAmount01', '30000000-0000-4000-8000-000000000003', 100))) as a$$,
  $$values ('refused', 'PT409', true)$$,
  'a charge of the wrong amount is refused and reported'
);
select results_eq(
  $$select a ->> 'status', a ? 'inconsistency_id'
    from public.apply_stripe_event(tests.stripe_event('payment_intent.payment_failed',
      tests.payment_intent('pi_WrongAmount02', '30000000-0000-4000-8000-000000000003', 100))) as a$$,
  $$values ('refused', false)$$,
  'a refused failure moved no money: no inconsistency'
);
select results_eq(
  $$select a ->> 'status', a ? 'inconsistency_id'
    from public.apply_stripe_event(tests.stripe_event('customer.created',
      '{"id": "cus_Plain01", "object": "customer"}') || jsonb_build_object('account', tests.token_lookup('acct_1CarlStd'))) as a$$,
  $$values ('ignored', false)$$,
  'an event of a type not handled is ignored, whichever account it comes from'
);

-- a body that is not a JSON object is refused before anything reads it
select throws_ok(
  $$select public.apply_stripe_event('[1]')$$,
  'PT422', 'a Stripe event has an id evt_… and a type',
  'an array is PT422'
);
select throws_ok(
  $$select public.apply_stripe_event('"evt_1"')$$,
  'PT422', 'a Stripe event has an id evt_… and a type',
  'a string is PT422'
);
select throws_ok(
  $$select public.apply_stripe_event('null')$$,
  'PT422', 'a Stripe event has an id evt_… and a type',
  'a JSON null is PT422'
);
select results_eq(
  $$select a ->> 'status', a -> 'error' ->> 'code', a -> 'error' ->> 'message'
    from public.apply_stripe_event('{"id": "evt_1", "type": "x", "data": [1]}') as a$$,
  $$values ('refused', 'PT422', 'event evt_1 has no data.object with an id')$$,
  'an event whose data is not an object is recorded as refused (PT422)'
);

select * from finish();
rollback;
