-- Setting changes: one admin tightens a limit, threshold or hold at once; loosening one, or
-- changing a fee, takes a second, distinct admin; each change takes effect at its
-- effective_from and is kept. Every other role is refused; bad values are refused with PT422.
begin;
select plan(54);

-- the backend and staff roles may call pgTAP's assertions (rolled back with the test)
select tests.let_roles_call_pgtap();

-- fixtures, as postgres: ada and abe are admins, otto an auditor, carl a contractor
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
select tests.create_supabase_user('ada');
select tests.create_supabase_user('abe');
select tests.create_supabase_user('otto');
update public.users set role = 'admin' where id in (tests.get_supabase_uid('ada'), tests.get_supabase_uid('abe'));
update public.users set role = 'auditor' where id = tests.get_supabase_uid('otto');
create temporary table proposal (statement text) on commit drop;
insert into proposal values (
  $$select public.propose_setting_change('escrow_hold_seconds', '345600', 'Fake completion claims are up this week')$$
);
grant select on proposal to anon, authenticated, service_role, payment_service, escrow_service, admin, auditor;

-- as anon, a user, the auditor and the backend roles: no way to propose
select tests.clear_authentication();
select throws_ok((select statement from proposal), '42501',
  'permission denied for function propose_setting_change', 'anon cannot propose a setting change');
reset role;
select tests.authenticate_as('carl', aal => 'aal2');
select throws_ok((select statement from proposal), '42501',
  'permission denied for function propose_setting_change', 'a user cannot propose a setting change');
reset role;
select tests.authenticate_as('otto', aal => 'aal2', role_name => 'auditor');
select throws_ok((select statement from proposal), '42501',
  'permission denied for function propose_setting_change', 'an auditor cannot propose a setting change');
reset role;
select tests.authenticate_as_service('payment_service');
select throws_ok((select statement from proposal), '42501',
  'permission denied for function propose_setting_change', 'payment_service cannot propose a setting change');
reset role;
select tests.authenticate_as_service('escrow_service');
select throws_ok((select statement from proposal), '42501',
  'permission denied for function propose_setting_change', 'escrow_service cannot propose a setting change');
reset role;
select tests.authenticate_as_service('service_role');
select throws_ok((select statement from proposal), '42501',
  'permission denied for table setting_changes', 'service_role cannot propose a setting change');
reset role;
select tests.authenticate_as('ada', role_name => 'admin');
select throws_ok((select statement from proposal), 'PT403',
  'a staff member''s change to setting_changes needs multi-factor authentication (aal2)',
  'an admin at aal1 cannot propose a setting change');
reset role;

-- as ada at aal2: values of the wrong kind are refused, naming the rule
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select throws_ok(
  $$select public.propose_setting_change('trusted_proxy_hops', '2', 'Behind a second proxy now')$$,
  'PT422', 'admins do not change setting trusted_proxy_hops through a setting change',
  'a setting outside the supported ones is refused');
select throws_ok(
  $$select public.propose_setting_change('escrow_hold_seconds', '"3 days"', 'Fake completion claims are up')$$,
  'PT422', 'escrow_hold_seconds must be a whole number from 0 to 31536000, not "3 days"',
  'a hold that is not a number is refused');
select throws_ok(
  $$select public.propose_setting_change('escrow_hold_seconds', '-1', 'Fake completion claims are up')$$,
  'PT422', 'escrow_hold_seconds must be a whole number from 0 to 31536000, not -1',
  'a negative hold is refused');
select throws_ok(
  $$select public.propose_setting_change('escrow_hold_seconds', '1.5', 'Fake completion claims are up')$$,
  'PT422', 'escrow_hold_seconds must be a whole number from 0 to 31536000, not 1.5',
  'a fractional hold is refused');
select throws_ok(
  $$select public.propose_setting_change('step_up_window_seconds', '0', 'Step-ups must be fresh')$$,
  'PT422', 'step_up_window_seconds must be a whole number from 1 to 86400, not 0',
  'a step-up window of nothing is refused');
select throws_ok(
  $$select public.propose_setting_change('withdrawal_dual_control_threshold_minor', '{"USD": 100000}', 'Payout fraud wave under way')$$,
  'PT422', 'withdrawal_dual_control_threshold_minor is an object of amounts per currency with a "default", not {"USD": 100000}',
  'a threshold without its default is refused');
select throws_ok(
  $$select public.propose_setting_change('withdrawal_dual_control_threshold_minor', '{"default": 100000, "USD": 0}', 'Payout fraud wave under way')$$,
  'PT422', 'withdrawal_dual_control_threshold_minor.USD must be a whole number from 1 to 1000000000000000, not 0',
  'a threshold of nothing is refused');
select throws_ok(
  $$select public.propose_setting_change('withdrawal_dual_control_threshold_minor', '{"default": 100000, "usd": 5}', 'Payout fraud wave under way')$$,
  'PT422', 'withdrawal_dual_control_threshold_minor holds amounts per ISO currency code or "default", not for usd',
  'a threshold for no currency is refused');
select throws_ok(
  $$select public.propose_setting_change('velocity_limits', '{"low": {"calls": 6, "seconds": 60}}', 'Card testing bots are back')$$,
  'PT422', 'velocity_limits holds exactly the levels low, medium and high, not {"low": {"calls": 6, "seconds": 60}}',
  'velocity limits missing a level are refused');
select throws_ok(
  $$select public.propose_setting_change('platform_fee', '{"currency": "USD", "rate_bps": 10001, "fixed_minor": 0}', 'New pricing from January')$$,
  'PT422', 'platform_fee.rate_bps must be a whole number from 0 to 10000, not 10001',
  'a fee above the whole amount is refused');
select throws_ok(
  $$select public.propose_setting_change('escrow_hold_seconds', '259200', 'Fake completion claims are up')$$,
  'PT422', 'setting escrow_hold_seconds already is 259200',
  'a change to the value the setting has is refused');
select throws_ok(
  $$select public.propose_setting_change('escrow_hold_seconds', '345600', '   ')$$,
  'PT422', 'a setting change needs a written reason of 10 to 2000 characters',
  'a change without a written reason is refused');
reset role;
select is((select count(*)::int from public.setting_changes), 0, 'the refused proposals left nothing');

-- as ada: a tightening change, due now, is approved and applied at once
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select set_config('fixture.tight', (public.propose_setting_change(
  'escrow_hold_seconds', '345600', 'Fake completion claims are up this week') ->> 'id'), true);
select results_eq(
  format($$select status, direction, approved_by, replaced_value, applied_at is not null
    from public.setting_changes where id = %L$$, current_setting('fixture.tight')),
  format($$values ('applied'::text, 'tightening'::text, %L::uuid, '259200'::jsonb, true)$$, tests.get_supabase_uid('ada')),
  'a longer escrow hold is tightening: one admin approves it, and it applies at once');
reset role;
select is(private.setting('escrow_hold_seconds'), '345600'::jsonb, 'the setting holds the new value');

-- a loosening change waits for a second admin
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select set_config('fixture.loose', (public.propose_setting_change(
  'escrow_hold_seconds', '86400', 'The claims wave is over: back to a shorter hold') ->> 'id'), true);
select is((select status || ' ' || direction from public.setting_changes where id = current_setting('fixture.loose')::uuid),
  'proposed loosening', 'a shorter escrow hold is loosening: it waits');
select throws_ok(
  format($$select public.approve_setting_change(%L, 'I am sure about this one')$$, current_setting('fixture.loose')),
  'PT403', 'no one approves their own setting change',
  'its proposer cannot approve it');
select throws_ok(
  format($$update public.setting_changes set status = 'applied' where id = %L$$, current_setting('fixture.loose')),
  'PT403', 'a setting change is applied by the database when it is due',
  'nor mark it applied');
select throws_ok(
  format($$update public.setting_changes set new_value = '0' where id = %L$$, current_setting('fixture.loose')),
  '42501', 'permission denied for table setting_changes',
  'nor change its value');
reset role;
select is(private.setting('escrow_hold_seconds'), '345600'::jsonb, 'the setting is unchanged meanwhile');
select tests.authenticate_as('abe', role_name => 'admin');
select throws_ok(
  format($$select public.approve_setting_change(%L, 'The wave is over indeed')$$, current_setting('fixture.loose')),
  'PT403', 'a staff member''s change to setting_changes needs multi-factor authentication (aal2)',
  'a second admin at aal1 cannot approve');
reset role;
select tests.authenticate_as('abe', aal => 'aal2', role_name => 'admin');
select throws_ok(
  format($$select public.approve_setting_change(%L, 'fine')$$, current_setting('fixture.loose')),
  'PT422', format('an approval of setting change %s needs a written reason of 10 to 2000 characters', current_setting('fixture.loose')),
  'an approval without a written reason is refused');
select results_eq(
  format($$select a ->> 'status', a ->> 'approved_by' from (select public.approve_setting_change(%L, 'The wave is over, the alerts agree') as a) as x$$,
    current_setting('fixture.loose')),
  format($$values ('applied'::text, %L::text)$$, tests.get_supabase_uid('abe')),
  'a second admin approves it, and it applies at once');
select throws_ok(
  format($$select public.reject_setting_change(%L, 'Changed my mind about it')$$, current_setting('fixture.loose')),
  'PT409', format('setting change %s is applied already: it never changes', current_setting('fixture.loose')),
  'an applied change never changes');
reset role;
select is(private.setting('escrow_hold_seconds'), '86400'::jsonb, 'the setting holds the loosened value');

-- a fee change takes two admins, whichever way it goes; it reaches the fee preview
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select set_config('fixture.fee', (public.propose_setting_change(
  'platform_fee', '{"currency": "USD", "rate_bps": 400, "fixed_minor": 30}', 'Pricing change agreed for this quarter') ->> 'id'), true);
select is((select status || ' ' || direction from public.setting_changes where id = current_setting('fixture.fee')::uuid),
  'proposed either', 'a lower fee waits for a second admin');
reset role;
select tests.authenticate_as('abe', aal => 'aal2', role_name => 'admin');
select is(public.approve_setting_change(current_setting('fixture.fee')::uuid, 'Matches the signed pricing sheet') ->> 'status',
  'applied', 'the second admin approves it');
reset role;
select results_eq(
  $$select rate_bps, fixed_minor from private.fee_schedule where currency = 'USD'$$,
  $$values (400, 30::bigint)$$, 'the fee schedule holds the new fee');
select tests.authenticate_as('carl', aal => 'aal2');
select is(public.fee_preview(10000, 'USD') ->> 'fee_minor', '430', 'and the preview charges it');
reset role;

-- rejected by another admin, withdrawn by its proposer
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select set_config('fixture.vel', (public.propose_setting_change(
  'velocity_limits', '{"low": {"calls": 120, "seconds": 60}, "medium": {"calls": 20, "seconds": 60}, "high": {"calls": 5, "seconds": 60}}',
  'Support asks for more room on reads') ->> 'id'), true);
select set_config('fixture.alert', (public.propose_setting_change(
  'alert_amount_threshold_minor', '{"default": 2000000}', 'Too many alerts on ordinary payments') ->> 'id'), true);
select is((select direction from public.setting_changes where id = current_setting('fixture.alert')::uuid),
  'loosening', 'a threshold that drops the per-currency ones to a higher default is loosening');
select is(public.reject_setting_change(current_setting('fixture.alert')::uuid, 'Entered the wrong threshold') ->> 'status',
  'withdrawn', 'its proposer withdraws a change');
reset role;
select tests.authenticate_as('abe', aal => 'aal2', role_name => 'admin');
select throws_ok(
  format($$update public.setting_changes set status = 'withdrawn', cancel_reason = 'Not needed any more' where id = %L$$, current_setting('fixture.vel')),
  'PT403', format('only its proposer withdraws setting change %s', current_setting('fixture.vel')),
  'another admin cannot withdraw it');
select is(public.reject_setting_change(current_setting('fixture.vel')::uuid, 'Reads are not the bottleneck here') ->> 'status',
  'rejected', 'another admin rejects a change');
reset role;
select is(private.setting('velocity_limits') -> 'low' ->> 'calls', '60', 'a rejected change is never applied');

-- a change effective later waits for its time; one that by then would loosen alone is superseded
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select set_config('fixture.later', (public.propose_setting_change(
  'step_up_window_seconds', '600', 'Shorter step-up window from tonight', now() + interval '1 hour') ->> 'id'), true);
select set_config('fixture.later2', (public.propose_setting_change(
  'payout_hold_seconds', '172800', 'Longer payout hold from tonight', now() + interval '1 hour') ->> 'id'), true);
select is((select status from public.setting_changes where id = current_setting('fixture.later')::uuid),
  'approved', 'a tightening change effective later is approved, not applied');
select is(public.propose_setting_change('step_up_window_seconds', '300', 'Shorter step-up window at once') ->> 'status',
  'applied', 'another tightens the same setting further, now');
reset role;
select is(private.apply_due_setting_changes(), 0, 'nothing is due before its time');
select is(private.setting('payout_hold_seconds'), '86400'::jsonb, 'the later change waits');
-- the hour passes (the owner moves the effective times back, around the rules)
alter table public.setting_changes disable trigger validate_setting_change;
update public.setting_changes set effective_from = now() - interval '1 second'
where id in (current_setting('fixture.later')::uuid, current_setting('fixture.later2')::uuid);
alter table public.setting_changes enable trigger validate_setting_change;
select is(private.apply_due_setting_changes(), 2, 'once due, both are settled');
select is(private.setting('payout_hold_seconds'), '172800'::jsonb, 'the due change is applied');
select results_eq(
  format($$select status, replaced_value from public.setting_changes where id = %L$$, current_setting('fixture.later')),
  $$values ('superseded'::text, '300'::jsonb)$$,
  'the one that would now loosen the step-up window without a second admin is superseded');
select is(private.setting('step_up_window_seconds'), '300'::jsonb, 'and the setting keeps the tighter value');

-- the history stays, and is audited
select throws_ok(
  format($$delete from public.setting_changes where id = %L$$, current_setting('fixture.tight')),
  'PT409', format('setting change %s is part of the settings'' history: it is never deleted', current_setting('fixture.tight')),
  'a setting change is never deleted, even by the owner');
select ok(
  (select count(*) >= 2 from public.payment_audit_logs where entity_type = 'setting_changes' and entity_id = current_setting('fixture.loose')),
  'a change and its approval are in the audit trail');
select ok(
  (select count(*) >= 2 from public.payment_audit_logs where entity_type = 'settings' and entity_id = 'escrow_hold_seconds'),
  'so are the writes of the setting itself');
select is(private.schedule_setting_changes(),
  'pg_cron is not installed in this database: nothing scheduled; setting changes apply when approved, or by select private.apply_due_setting_changes()',
  'without pg_cron, nothing is scheduled');

-- as the auditor: reads the history, changes nothing
select tests.authenticate_as('otto', aal => 'aal2', role_name => 'auditor');
select is((select count(*)::int from public.setting_changes), 8, 'the auditor reads every change');
reset role;

select * from finish();
rollback;
