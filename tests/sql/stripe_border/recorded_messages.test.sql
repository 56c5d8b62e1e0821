-- The border's records keep a processor's or the database's message through
-- private.recordable_message: a message the card-data guard would refuse is kept as a marker,
-- so that the record of a refusal or an inconsistency is never refused, and lost, for its
-- wording. Only payment_service, which records them, may call it.
begin;
select plan(13);

select tests.let_roles_call_pgtap();

select tests.authenticate_as_service('payment_service');
select is(
  private.recordable_message('card 4111 1111 1111 1111 refused', 500),
  '[removed: it held card data]',
  'a message holding a card number is kept as the marker'
);
select is(
  private.recordable_message(
    'withdrawal b1a23145-8932-4147-bd21-98a2673b9e67: 42501: permission denied', 500
  ),
  '[removed: it held card data]',
  'so is one whose digits joined to an id read as a card number'
);
select is(
  private.recordable_message('Payouts are not enabled for this account.', 500),
  'Payouts are not enabled for this account.',
  'any other message is kept as it is'
);
select is(
  char_length(private.recordable_message(repeat('x', 600), 500)),
  500,
  'and cut to its length'
);
select is(private.recordable_message(null, 500), null, 'no message stays none');
select is(
  private.recordable_message(
    'No such PaymentMethod: ''pm_1QxYzAbCdEfGh''; customer cus_NffrFeUfNV2Hib, '
    || 'account acct_1Lp5ZfQk, ba_1Ab2Cd3Ef4 and card_1Xy2Zw3Vu', 500
  ),
  'No such PaymentMethod: ''[pm_…]''; customer [cus_…], account [acct_…], [ba_…] and [card_…]',
  'a message that names processor tokens keeps their kinds alone'
);
select is(
  private.recordable_message('PaymentIntent pi_3Abcdef1234 of po_1Abcdef, a spm_12345678', 500),
  'PaymentIntent pi_3Abcdef1234 of po_1Abcdef, a spm_12345678',
  'references that are not credentials, and words that only contain a prefix, are kept'
);
select is(
  private.recordable_message(repeat('x', 495) || ' acct_1Lp5ZfQkAbCdEfGh', 500),
  repeat('x', 495) || ' [acc',
  'a token is removed before the message is cut: no part of it is kept'
);
reset role;

set local role authenticated;
select throws_ok(
  $$select private.recordable_message('a', 10)$$,
  '42501', 'permission denied for function recordable_message',
  'a user may not call it'
);
reset role;

-- Every border function that records a message of the processor or of the database keeps it
-- through the function (a call site that stored it as it came would bring the loss back).
select is(
  (select array_agg(p.proname::text order by p.proname)
    from pg_proc as p
    where p.pronamespace = 'public'::regnamespace
      and p.proname in (
        'record_funding_failure', 'record_processor_inconsistency', 'record_refund_refusal',
        'record_payout_account_refusal', 'record_withdrawal_processor_failure'
      )
      and p.prosrc like '%private.recordable_message(%'),
  array[
    'record_funding_failure', 'record_payout_account_refusal', 'record_processor_inconsistency',
    'record_refund_refusal', 'record_withdrawal_processor_failure'
  ],
  'the five border records keep their messages through it'
);
select is(
  (select count(*)::int from pg_proc as p
    where p.pronamespace = 'public'::regnamespace
      and p.proname like 'record\_%'
      and p.prosrc ~ 'left\(\s*(message|detail|[a-z_]+\.detail)\s*,'),
  0,
  'no border record cuts a message itself and stores it as it came'
);

-- a webhook event's error message keeps no processor token, whoever writes it
insert into public.webhook_events (id, type, payload, status, error_code, error_message)
values ('evt_1ScrubTest01', 'payout.paid', '{"id": "evt_1ScrubTest01"}', 'refused', 'PT409',
  'payout po_1Abc was made on account acct_1Lp5ZfQkAbCdEf, not acct_2Xy9ZfQkAbCdEf');
select is(
  (select error_message from public.webhook_events where id = 'evt_1ScrubTest01'),
  'payout po_1Abc was made on account [acct_…], not [acct_…]',
  'a refused event''s message names the account''s kind alone'
);
update public.webhook_events set error_message = 'No such external account: ''ba_1Ab2Cd3Ef4'''
where id = 'evt_1ScrubTest01';
select is(
  (select error_message from public.webhook_events where id = 'evt_1ScrubTest01'),
  'No such external account: ''[ba_…]''',
  'and so does one written later'
);

select * from finish();
rollback;
