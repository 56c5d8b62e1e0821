-- The border's records keep a processor's or the database's message through
-- private.recordable_message: a message the card-data guard would refuse is kept as a marker,
-- so that the record of a refusal or an inconsistency is never refused, and lost, for its
-- wording. Only payment_service, which records them, may call it.
begin;
select plan(8);

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

select * from finish();
rollback;
