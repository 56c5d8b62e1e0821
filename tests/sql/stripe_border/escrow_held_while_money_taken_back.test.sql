-- Escrow is not paid to the payee while the processor may have taken the money back: while an
-- open refund_refused, chargeback_refused or chargeback_closing_refused inconsistency names a
-- payment or its PaymentIntent, its release (by the payer, or by staff from a dispute) and its
-- split are refused (PT409), after who may move it was checked; a refund to the payer is not
-- held. Once operations resolve the inconsistency, the payment moves again.
begin;
select plan(12);

select tests.let_roles_call_pgtap();

-- fixtures, as postgres: hana pays carl for p1 (10000), p2 (20000), p3 (30000)
select tests.create_supabase_user('hana');
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
select tests.create_supabase_user('ada');
update public.users set role = 'admin' where id = tests.get_supabase_uid('ada');
update private.settings set value = '0' where key = 'escrow_hold_seconds';
select tests.create_project_payments('hana', 'carl', 3);
-- carl has submitted the milestones for review
select tests.submit_milestone(m.id) from public.project_milestones as m;

select tests.authenticate_as_service('payment_service');
-- p1 and p3 funded; p2's chargeback comes before its success, which funds then disputes it
select public.apply_stripe_event(tests.stripe_event('payment_intent.succeeded',
  tests.payment_intent('pi_Back' || n, format('30000000-0000-4000-8000-00000000000%s', n)::uuid,
    10000 * n)))
from unnest(array[1, 3]) as n;
select results_eq(
  $$select a ->> 'status', a -> 'error' ->> 'code'
    from public.apply_stripe_event(tests.stripe_event('charge.refunded', jsonb_build_object(
      'id', 'ch_Back1', 'object', 'charge', 'payment_intent', 'pi_Back1', 'amount', 10000,
      'amount_refunded', 4000, 'currency', 'usd'))) as a$$,
  $$values ('refused', 'PT422')$$,
  'a partial refund of funded p1 is refused'
);
select public.apply_stripe_event(tests.stripe_event('charge.dispute.created',
  tests.stripe_dispute('du_Early2', 'pi_Back2', 20000)));
select public.apply_stripe_event(tests.stripe_event('payment_intent.succeeded',
  tests.payment_intent('pi_Back2', '30000000-0000-4000-8000-000000000002', 20000)));
reset role;
select results_eq(
  $$select kind, coalesce(milestone_payment_id::text, 'none') from public.processor_inconsistencies
    where resolution is null order by kind$$,
  $$values ('refund_refused', '30000000-0000-4000-8000-000000000001')$$,
  'the partial refund is reported; the early chargeback was applied by the success'
);

-- staff cannot release a funded payment in any case: who comes first
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select throws_ok(
  $$update public.milestone_payments set status = 'released'
    where id = '30000000-0000-4000-8000-000000000001'$$,
  'PT403', null,
  'an admin may not release funded p1: who may move it is answered first'
);
reset role;

-- the payer cannot release either while the processor may have taken the money back
select tests.authenticate_as('hana', aal => 'aal2');
select throws_ok(
  $$update public.milestone_payments set status = 'released'
    where id = '30000000-0000-4000-8000-000000000001'$$,
  'PT409', null,
  'p1, partly refunded at the processor, is not released'
);
select results_eq(
  $$select status::text from public.milestone_payments
    where id = '30000000-0000-4000-8000-000000000002'$$,
  $$values ('disputed')$$,
  'p2, whose chargeback came before its success, is disputed by it: it is not released'
);
select results_eq(
  $$select a ->> 'code', current_setting('response.status')
    from public.release_milestone_payment('30000000-0000-4000-8000-000000000001',
      'hana-release-1') as a$$,
  $$values ('PT409', '409')$$,
  'release_milestone_payment answers the same refusal'
);
select set_config('response.status', '', true);

-- p3 disputed, then partly refunded at the processor: staff may refund it, not split or release
select tests.raise_if_refused(public.open_dispute('30000000-0000-4000-8000-000000000003',
  'The work was never done', 'hana-dispute-3'));
reset role;
select tests.authenticate_as_service('payment_service');
select public.apply_stripe_event(tests.stripe_event('charge.refunded', jsonb_build_object(
  'id', 'ch_Back3', 'object', 'charge', 'payment_intent', 'pi_Back3', 'amount', 30000,
  'amount_refunded', 1000, 'currency', 'usd')));
reset role;
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select throws_ok(
  $$select tests.raise_if_refused(public.resolve_dispute(
      (select id from public.disputes where milestone_payment_id = '30000000-0000-4000-8000-000000000003'),
      'split', 'Half the work was done, the rest goes back', 'ada-split-3', 15000))$$,
  'PT409', null,
  'staff cannot split p3 while the processor may have refunded part of it'
);
select throws_ok(
  $$select tests.raise_if_refused(public.resolve_dispute(
      (select id from public.disputes where milestone_payment_id = '30000000-0000-4000-8000-000000000003'),
      'release', 'The work was done after all, says the inspector', 'ada-release-3'))$$,
  'PT409', null,
  'nor release it'
);
select lives_ok(
  $$select tests.raise_if_refused(public.resolve_dispute(
      (select id from public.disputes where milestone_payment_id = '30000000-0000-4000-8000-000000000003'),
      'refund', 'Nothing was done: the payer gets it all back', 'ada-refund-3'))$$,
  'but may refund it to the payer'
);

-- operations settle the inconsistencies: the payments move again
select public.resolve_processor_inconsistency(i.id,
  'The refund was a mistake, reversed by the processor: the charge stands')
from public.processor_inconsistencies as i where i.processor_object_id = 'ch_Back1';
reset role;
-- the card issuer decides p2's chargeback for the platform: p2 is funded again
select tests.authenticate_as_service('payment_service');
select public.apply_stripe_event(tests.stripe_event('charge.dispute.closed',
  tests.stripe_dispute('du_Early2', 'pi_Back2', 20000, 'won')));
reset role;
select tests.authenticate_as('hana', aal => 'aal2');
select lives_ok(
  $$update public.milestone_payments set status = 'released'
    where id = '30000000-0000-4000-8000-000000000001'$$,
  'once resolved, p1 is released'
);
select lives_ok(
  $$update public.milestone_payments set status = 'released'
    where id = '30000000-0000-4000-8000-000000000002'$$,
  'and p2'
);
reset role;
select results_eq(
  $$select status::text from public.milestone_payments order by id$$,
  $$values ('released'), ('released'), ('refunded')$$,
  'p1 and p2 released, p3 refunded'
);

select * from finish();
rollback;
