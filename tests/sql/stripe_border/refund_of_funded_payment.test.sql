-- charge.refunded refunds the payment funded by the refunded intent, whatever inconsistency
-- names that intent; only when no payment holds the intent does the refund settle the open
-- charge_unrecorded / charge_refused inconsistency about it, and no other kind.
begin;
select plan(8);

select tests.let_roles_call_pgtap();

-- fixtures, as postgres: hana pays carl for p1 (funded by pi_Held01 below) and p2 (pending)
select tests.create_supabase_user('hana');
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
select tests.create_project_payments('hana', 'carl', 2);

select tests.authenticate_as_service('payment_service');
select public.apply_stripe_event(tests.stripe_event('payment_intent.succeeded',
  tests.payment_intent('pi_Held01', '30000000-0000-4000-8000-000000000001', 10000)));
reset role;
-- An open inconsistency about the intent beside the payment it funded: funding resolves such
-- records today, so it is planted past the triggers, as an older record would be.
alter table public.processor_inconsistencies disable trigger inconsistency_already_funded;
insert into public.processor_inconsistencies (
  id, kind, processor_object_id, milestone_payment_id, amount_minor, currency, recovery, detail
)
values ('e0000000-0000-4000-8000-000000000001', 'charge_unrecorded', 'pi_Held01',
  '30000000-0000-4000-8000-000000000001', 10000, 'USD', 'refund', 'planted');
alter table public.processor_inconsistencies enable trigger inconsistency_already_funded;

select tests.authenticate_as_service('payment_service');
select is(
  public.apply_stripe_event(tests.stripe_event('charge.refunded', jsonb_build_object(
    'id', 'ch_Held01', 'object', 'charge', 'payment_intent', 'pi_Held01', 'amount', 10000,
    'amount_refunded', 10000, 'currency', 'usd'))) ->> 'status',
  'processed',
  'the refund of the intent that funded p1 is applied'
);
select results_eq(
  $$select mp.status::text, (select count(*)::int from public.payment_transactions as t
      where t.type = 'refund' and t.processor_transaction_id = 'ch_Held01')
    from public.milestone_payments as mp where mp.id = '30000000-0000-4000-8000-000000000001'$$,
  $$values ('refunded', 1)$$,
  'p1 is refunded, its refund recorded once, although an inconsistency named the intent'
);
select is(
  (select resolution from public.processor_inconsistencies
    where id = 'e0000000-0000-4000-8000-000000000001'),
  null,
  'and the inconsistency is not taken for the payment''s refund'
);

-- no payment holds the intent: the refund settles the charge recorded as unrecorded
select public.record_processor_inconsistency('charge_unrecorded', 'pi_Loose01', null, 3000,
  'USD', 'The function could not record the charge');
select is(
  public.apply_stripe_event(tests.stripe_event('charge.refunded', jsonb_build_object(
    'id', 'ch_Loose01', 'object', 'charge', 'payment_intent', 'pi_Loose01', 'amount', 3000,
    'amount_refunded', 3000, 'currency', 'usd'))) ->> 'status',
  'processed',
  'a refund of a charge no payment holds is applied'
);
select results_eq(
  $$select recovery, resolution like 'Refunded by the processor: charge ch_Loose01%'
    from public.processor_inconsistencies where processor_object_id = 'pi_Loose01'$$,
  $$values ('refund', true)$$,
  'and settles its inconsistency'
);

-- but never one of another kind
select public.record_processor_inconsistency('transfer_unrecorded', 'pi_Other01', null, 4000,
  'USD', 'another kind of record about the same id');
select results_eq(
  $$select a ->> 'status', a -> 'error' ->> 'code'
    from public.apply_stripe_event(tests.stripe_event('charge.refunded', jsonb_build_object(
      'id', 'ch_Other01', 'object', 'charge', 'payment_intent', 'pi_Other01', 'amount', 4000,
      'amount_refunded', 4000, 'currency', 'usd'))) as a$$,
  $$values ('refused', 'PT404')$$,
  'a refund that neither a payment nor a charge record holds is refused'
);
select results_eq(
  $$select kind, resolution is null from public.processor_inconsistencies
    where processor_object_id in ('pi_Other01', 'ch_Other01') order by kind$$,
  $$values ('refund_refused', true), ('transfer_unrecorded', true)$$,
  'the other record stays open, and the refused refund is reported'
);
select is(
  (select status::text from public.milestone_payments where id = '30000000-0000-4000-8000-000000000002'),
  'pending',
  'p2 is untouched'
);

select * from finish();
rollback;
