-- The border's tables, role by role: anon has nothing; admin reads customers and attempts,
-- auditors read neither but read the inconsistencies; escrow_service has nothing; no role but
-- payment_service writes them, and only through what the processor reports.
begin;
select plan(16);

-- the backend and staff roles may call pgTAP's assertions (rolled back with the test)
select tests.let_roles_call_pgtap();

-- fixtures, as postgres: hana has a card (so a customer), and an attempt to pay carl
select tests.create_supabase_user('hana');
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
select tests.create_supabase_user('ada');
select tests.create_supabase_user('aud');
update public.users set role = 'admin' where id = tests.get_supabase_uid('ada');
update public.users set role = 'auditor' where id = tests.get_supabase_uid('aud');
select tests.create_project_with_milestones(
  'hana',
  'carl',
  amounts => array[40000],
  titles => array['Cabinets'],
  escrow => false
);
insert into public.payment_methods (id, user_id, type, processor_payment_method_id_sealed, processor_payment_method_id_lookup, processor_customer_id_lookup)
values ('40000000-0000-4000-8000-000000000001', tests.get_supabase_uid('hana'), 'credit_card',
  tests.sealed_token(), tests.token_lookup('pm_HanaCard01'), tests.token_lookup('cus_HanaCust01'));
select tests.authenticate_as('hana');
select public.begin_funding_attempt('30000000-0000-4000-8000-000000000001',
  '40000000-0000-4000-8000-000000000001');
reset role;
insert into public.processor_inconsistencies (kind, processor_object_id, amount_minor, currency)
values ('charge_unrecorded', 'pi_Lost01', 40000, 'USD');

select tests.clear_authentication();
select throws_ok('select count(*) from public.processor_customers', '42501',
  'permission denied for table processor_customers', 'anon cannot read processor customers');
select throws_ok('select count(*) from public.funding_attempts', '42501',
  'permission denied for table funding_attempts', 'anon cannot read funding attempts');
select throws_ok('select count(*) from public.processor_inconsistencies', '42501',
  'permission denied for table processor_inconsistencies', 'anon cannot read inconsistencies');
select throws_ok(
  $$select public.begin_funding_attempt('30000000-0000-4000-8000-000000000001',
    '40000000-0000-4000-8000-000000000001')$$,
  '42501', 'permission denied for function begin_funding_attempt',
  'anon cannot open a funding attempt'
);

reset role;
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select is((select count(*)::int from public.processor_customers), 1,
  'admin reads the processor customers');
select is((select count(*)::int from public.funding_attempts), 1, 'admin reads the funding attempts');
select throws_ok(
  $$update public.funding_attempts set status = 'failed'$$,
  '42501', 'permission denied for table funding_attempts',
  'admin does not end an attempt: the processor does'
);
select throws_ok(
  $$insert into public.processor_customers (user_id, processor_customer_id_sealed, processor_customer_id_lookup)
    values ((select id from public.users limit 1), tests.sealed_token(), tests.token_lookup('cus_Admin0001'))$$,
  '42501', 'permission denied for table processor_customers',
  'admin does not record a customer'
);
select throws_ok(
  $$update public.processor_inconsistencies set resolution = 'Looked at it, all fine here.'$$,
  '42501', 'permission denied for table processor_inconsistencies',
  'admin resolves an inconsistency only through resolve_processor_inconsistency (aal2, written)'
);
select throws_ok(
  $$update public.processor_inconsistencies set recovery = 'fund'$$,
  '42501', 'permission denied for table processor_inconsistencies',
  'admin does not choose a recovery: payment_service recovers'
);

reset role;
select tests.authenticate_as('aud', role_name => 'auditor');
select throws_ok('select count(*) from public.processor_customers', '42501',
  'permission denied for table processor_customers', 'an auditor does not read processor customers');
select throws_ok('select count(*) from public.funding_attempts', '42501',
  'permission denied for table funding_attempts', 'nor funding attempts');
select throws_ok(
  $$update public.processor_inconsistencies set resolution = 'Looked at it, all fine here.'$$,
  '42501', 'permission denied for table processor_inconsistencies',
  'an auditor reads inconsistencies but does not resolve them'
);

reset role;
select tests.authenticate_as_service('escrow_service');
select throws_ok('select count(*) from public.processor_customers', '42501',
  'permission denied for table processor_customers', 'escrow_service cannot read processor customers');
select throws_ok('select count(*) from public.funding_attempts', '42501',
  'permission denied for table funding_attempts', 'nor funding attempts');
select throws_ok('select count(*) from public.processor_inconsistencies', '42501',
  'permission denied for table processor_inconsistencies', 'nor inconsistencies');

select * from finish();
rollback;
