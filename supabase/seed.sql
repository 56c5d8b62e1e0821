-- Demo data for a local stack: a homeowner, a contractor, an admin and an auditor, and a
-- project with three milestones. Every user's password is "password".
-- Each row has a fixed id, so running the seed again changes nothing.

insert into auth.users (
  id, aud, role, email, encrypted_password, email_confirmed_at,
  raw_app_meta_data, raw_user_meta_data
)
values
  (
    '00000000-0000-4000-8000-00000000a001', 'authenticated', 'authenticated',
    'hana.homeowner@example.com', extensions.crypt('password', extensions.gen_salt('bf')), now(),
    '{"provider": "email"}', '{"full_name": "Hana Homeowner", "role": "homeowner"}'
  ),
  (
    '00000000-0000-4000-8000-00000000c001', 'authenticated', 'authenticated',
    'carl.contractor@example.com', extensions.crypt('password', extensions.gen_salt('bf')), now(),
    '{"provider": "email"}', '{"full_name": "Carl Contractor", "role": "contractor"}'
  ),
  (
    '00000000-0000-4000-8000-00000000ad01', 'authenticated', 'authenticated',
    'ada.admin@example.com', extensions.crypt('password', extensions.gen_salt('bf')), now(),
    '{"provider": "email"}', '{"full_name": "Ada Admin"}'
  ),
  (
    '00000000-0000-4000-8000-00000000a0d1', 'authenticated', 'authenticated',
    'aldo.auditor@example.com', extensions.crypt('password', extensions.gen_salt('bf')), now(),
    '{"provider": "email"}', '{"full_name": "Aldo Auditor"}'
  )
on conflict (id) do nothing;

-- Staff roles are given by an admin, never chosen at sign-up.
update public.users set role = 'admin'
where id = '00000000-0000-4000-8000-00000000ad01';
update public.users set role = 'auditor'
where id = '00000000-0000-4000-8000-00000000a0d1';

insert into public.projects (id, owner_id, contractor_id, title, description, status)
values (
  '00000000-0000-4000-8000-0000000b0001',
  '00000000-0000-4000-8000-00000000a001',
  '00000000-0000-4000-8000-00000000c001',
  'Kitchen remodel',
  'New cabinets, counters and lighting.',
  'in_progress'
)
on conflict (id) do nothing;

insert into public.project_milestones (id, project_id, position, title, amount_minor, currency)
values
  (
    '00000000-0000-4000-8000-0000000c0001', '00000000-0000-4000-8000-0000000b0001',
    1, 'Demolition and rough-in', 250000, 'USD'
  ),
  (
    '00000000-0000-4000-8000-0000000c0002', '00000000-0000-4000-8000-0000000b0001',
    2, 'Cabinets and counters', 900000, 'USD'
  ),
  (
    '00000000-0000-4000-8000-0000000c0003', '00000000-0000-4000-8000-0000000b0001',
    3, 'Lighting and finish', 75000, 'USD'
  )
on conflict (id) do nothing;

insert into public.payment_methods (
  id, user_id, type, processor_payment_method_id, processor_customer_id, brand, last4,
  exp_month, exp_year, nickname, is_default
)
values (
  '00000000-0000-4000-8000-0000000d0001', '00000000-0000-4000-8000-00000000a001',
  'credit_card', 'pm_1DemoHanaVisa', 'cus_DemoHana01', 'visa', '4242', 12, 2030,
  'Everyday Visa', true
)
on conflict (id) do nothing;

-- Carl's connected account, as onboarding records it (payment_service), then his bank account on it.
insert into public.processor_accounts (processor_account_id, user_id)
values ('acct_DemoCarl01', '00000000-0000-4000-8000-00000000c001')
on conflict (processor_account_id) do nothing;

insert into public.payout_methods (
  id, user_id, type, processor_account_id, processor_external_account_id, bank_name, last4,
  currency, nickname, is_default
)
values (
  '00000000-0000-4000-8000-0000000e0001', '00000000-0000-4000-8000-00000000c001',
  'bank_account', 'acct_DemoCarl01', 'ba_DemoCarl01', 'First Demo Bank', '6789', 'USD',
  'Business checking', true
)
on conflict (id) do nothing;

insert into public.escrow_accounts (id, user_id, project_id, currency)
values (
  '00000000-0000-4000-8000-0000000f0001', '00000000-0000-4000-8000-00000000a001',
  '00000000-0000-4000-8000-0000000b0001', 'USD'
)
on conflict (id) do nothing;

-- A local demo releases right after funding: no escrow hold here (the default is 72 hours).
update private.settings set value = '0' where key = 'escrow_hold_seconds';
