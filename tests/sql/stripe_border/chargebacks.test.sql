-- Chargebacks: charge.dispute.created opens a dispute over the funded payment (opened by the
-- payer, naming the processor's dispute) and disputes the payment; charge.dispute.closed
-- decides it: lost, the payment is refunded (escrow back to clearing); won, the dispute is
-- withdrawn and the payment is held in escrow again (nothing posted twice). Only payment_service
-- opens or decides a chargeback; staff cannot decide one, and payment_service decides nothing
-- else. A chargeback over money already settled is refused and left to operations.
begin;
select plan(22);

-- the backend and staff roles may call pgTAP's assertions (rolled back with the test)
select tests.let_roles_call_pgtap();

-- fixtures, as postgres: hana pays carl; p1, p2, p3 funded, p3 then released
select tests.create_supabase_user('hana');
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
select tests.create_supabase_user('ada');
update public.users set role = 'admin' where id = tests.get_supabase_uid('ada');
update private.settings set value = '0' where key = 'escrow_hold_seconds';
select tests.create_project_payments('hana', 'carl', 3);
-- carl has submitted the milestones for review
select tests.submit_milestone(m.id) from public.project_milestones as m;
select tests.authenticate_as_service('payment_service');
select public.apply_stripe_event(tests.stripe_event('payment_intent.succeeded',
  tests.payment_intent('pi_Charge' || n, format('30000000-0000-4000-8000-00000000000%s', n)::uuid,
    10000 * n)))
from generate_series(1, 3) as n;
reset role;
select tests.authenticate_as('hana');
update public.milestone_payments set status = 'released'
where id = '30000000-0000-4000-8000-000000000003';
reset role;

-- a chargeback opens a dispute over the funded payment
select tests.authenticate_as_service('payment_service');
select is(
  public.apply_stripe_event(tests.stripe_event('charge.dispute.created',
    tests.stripe_dispute('du_Lost01', 'pi_Charge1', 10000))) ->> 'status',
  'processed',
  'charge.dispute.created is applied'
);
select results_eq(
  $$select d.status::text, d.opened_by = mp.payer_id, d.reason, mp.status::text
    from public.disputes as d join public.milestone_payments as mp on mp.id = d.milestone_payment_id
    where d.processor_dispute_id = 'du_Lost01'$$,
  $$values ('open', true, 'Chargeback du_Lost01 at the card issuer: fraudulent', 'disputed')$$,
  'an open dispute, opened by the payer at her card issuer, disputes the payment'
);
select is(
  public.apply_stripe_event(tests.stripe_event('charge.dispute.created',
    tests.stripe_dispute('du_Lost01', 'pi_Charge1', 10000))) ->> 'status',
  'processed',
  'the same chargeback reported again (a new event) is absorbed'
);
select is(
  (select count(*)::int from public.disputes where milestone_payment_id = '30000000-0000-4000-8000-000000000001'),
  1,
  'one dispute'
);

-- staff do not decide a chargeback: the card issuer does
reset role;
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select throws_ok(
  $$update public.disputes set status = 'resolved', outcome = 'release',
      resolution = 'The work was done, so the contractor is paid.'
    where processor_dispute_id = 'du_Lost01'$$,
  'PT403',
  format('dispute %s is chargeback du_Lost01: the card issuer decides it, and the processor reports the decision',
    (select id from public.disputes where processor_dispute_id = 'du_Lost01')),
  'an admin cannot decide a chargeback'
);
select throws_ok(
  $$select tests.raise_if_refused(public.resolve_dispute(
      (select id from public.disputes where processor_dispute_id = 'du_Lost01'), 'release',
      'The work was done, so the contractor is paid.', 'ada-resolve-1'))$$,
  'PT403', null,
  'nor through resolve_dispute'
);
select throws_ok(
  $$insert into public.disputes (milestone_payment_id, reason, processor_dispute_id)
    values ('30000000-0000-4000-8000-000000000002', 'Forged chargeback', 'du_Forged01')$$,
  '42501', 'permission denied for table disputes',
  'an admin cannot open a chargeback'
);
reset role;
select tests.authenticate_as('hana');
select throws_ok(
  $$insert into public.disputes (milestone_payment_id, reason, processor_dispute_id)
    values ('30000000-0000-4000-8000-000000000002', 'Forged chargeback', 'du_Forged02')$$,
  '42501', 'permission denied for table disputes',
  'a party cannot dress her dispute up as a chargeback'
);

-- payment_service decides only chargebacks, and disputes only through one
reset role;
select tests.authenticate_as_service('payment_service');
select throws_ok(
  $$update public.milestone_payments set status = 'disputed'
    where id = '30000000-0000-4000-8000-000000000002'$$,
  'PT409',
  'milestone payment 30000000-0000-4000-8000-000000000002 is disputed by opening a dispute over it',
  'payment_service cannot dispute a payment without a chargeback'
);
select throws_ok(
  $$update public.milestone_payments set status = 'refunded'
    where id = '30000000-0000-4000-8000-000000000001'$$,
  'PT403',
  'milestone payment 30000000-0000-4000-8000-000000000001 leaves dispute only by the decision of its chargeback',
  'nor refund a disputed payment without the chargeback''s decision'
);

-- lost: the payment is refunded to the payer
select is(
  public.apply_stripe_event(tests.stripe_event('charge.dispute.closed',
    tests.stripe_dispute('du_Lost01', 'pi_Charge1', 10000, 'lost'))) ->> 'status',
  'processed',
  'charge.dispute.closed (lost) is applied'
);
reset role;
select results_eq(
  $$select d.status::text, d.outcome::text, mp.status::text, (
      select count(*)::int from private.ledger_transfers as t
      where t.reference_id = mp.id and t.code = 'milestone_refund' and t.amount = 10000
    )
    from public.disputes as d join public.milestone_payments as mp on mp.id = d.milestone_payment_id
    where d.processor_dispute_id = 'du_Lost01'$$,
  $$values ('resolved', 'refund', 'refunded', 1)$$,
  'the dispute is resolved as a refund, and the payment refunded from escrow once'
);

-- won: the dispute is withdrawn and the payment held in escrow again
select tests.authenticate_as_service('payment_service');
select is(
  public.apply_stripe_event(tests.stripe_event('charge.dispute.created',
    tests.stripe_dispute('du_Won01', 'pi_Charge2', 20000))) ->> 'status',
  'processed',
  'a chargeback over p2 opens a dispute'
);
select is(
  public.apply_stripe_event(tests.stripe_event('charge.dispute.closed',
    tests.stripe_dispute('du_Won01', 'pi_Charge2', 20000, 'won'))) ->> 'status',
  'processed',
  'charge.dispute.closed (won) is applied'
);
reset role;
select results_eq(
  $$select d.status::text, mp.status::text, (
      select count(*)::int from private.ledger_transfers as t
      where t.reference_id = mp.id and t.code = 'milestone_funding'
    )
    from public.disputes as d join public.milestone_payments as mp on mp.id = d.milestone_payment_id
    where d.processor_dispute_id = 'du_Won01'$$,
  $$values ('withdrawn', 'funded', 1)$$,
  'the dispute is withdrawn, the payment funded again, and its funding not posted twice'
);
select tests.authenticate_as('hana');
select is(
  (tests.raise_if_refused(public.release_milestone_payment(
    '30000000-0000-4000-8000-000000000002', 'hana-release-2')) ->> 'status'),
  'released',
  'the payer can release it as any funded payment'
);
reset role;
select tests.authenticate_as_service('payment_service');
select is(
  public.apply_stripe_event(tests.stripe_event('charge.dispute.closed',
    tests.stripe_dispute('du_Won01', 'pi_Charge2', 20000, 'won'))) ->> 'status',
  'processed',
  'the decision reported again is absorbed'
);

-- a chargeback over money already paid out to the payee: refused, for operations
select results_eq(
  $$select a ->> 'status', a -> 'error' ->> 'message', a ? 'inconsistency_id'
    from public.apply_stripe_event(tests.stripe_event('charge.dispute.created',
      tests.stripe_dispute('du_Late01', 'pi_Charge3', 30000))) as a$$,
  $$values ('refused',
    'milestone payment 30000000-0000-4000-8000-000000000003 is released: chargeback du_Late01 cannot dispute it',
    true)$$,
  'a chargeback over a released payment is refused'
);
select results_eq(
  $$select kind, milestone_payment_id::text, amount_minor, resolution is null
    from public.processor_inconsistencies where processor_object_id = 'du_Late01'$$,
  $$values ('chargeback_refused', '30000000-0000-4000-8000-000000000003', 30000::bigint, true)$$,
  'and recorded as an open inconsistency'
);
select results_eq(
  $$select a ->> 'status', a -> 'error' ->> 'code'
    from public.apply_stripe_event(tests.stripe_event('charge.dispute.closed',
      tests.stripe_dispute('du_Unknown01', 'pi_Charge1', 10000, 'lost'))) as a$$,
  $$values ('refused', 'PT409')$$,
  'the decision of a chargeback no dispute records, over a payment already refunded, is refused'
);
select results_eq(
  $$select a ->> 'status', a -> 'error' ->> 'code'
    from public.apply_stripe_event(tests.stripe_event('charge.dispute.created',
      tests.stripe_dispute('du_Wrong01', 'pi_Charge1', 10000) || '{"amount": 999}')) as a$$,
  $$values ('refused', 'PT409')$$,
  'a chargeback of another amount than the payment''s is refused'
);

reset role;
select is(
  (select sum(credits_posted - debits_posted + credits_pending - debits_pending)::bigint
    from private.ledger_balances),
  0::bigint,
  'every ledger account still sums to zero'
);

select * from finish();
rollback;
