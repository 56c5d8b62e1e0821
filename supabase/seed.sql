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

-- Hana's saved card and Carl's bank account, as the functions store them: sealed, with their
-- lookups (docs/token-envelopes.md). They name no object at Stripe, and are sealed under the
-- key id `seed-demo`, which no one holds: a function asked to open one answers that the key
-- is unknown. A card saved through the payment-methods function is one that charges.
insert into public.processor_customers (
  user_id, processor_customer_id_sealed, processor_customer_id_lookup
)
values (
  '00000000-0000-4000-8000-00000000a001',
  '{"v": 1, "alg": "A256GCM+A256KW", "kid": "seed-demo",
    "wrapped_key": "LNFu0qzU0_GrS3M0rzniwPbta1Dl_aCpuPui_GJ_gUPW9wPHkrvGuA",
    "nonce": "cUyJ8sS37PRWRPbc", "ciphertext": "5Y0OZtLOAAPs8BZQJfzaxxMTdGVNKHIJL4YihxY2"}',
  'seed-demo:SEx5QYLXOiT8P5sZ74LmzUgGGK130PG-joHK8qLYMNA'
)
on conflict (user_id) do nothing;

insert into public.payment_methods (
  id, user_id, type, brand, last4, exp_month, exp_year, nickname, is_default,
  processor_payment_method_id_sealed, processor_payment_method_id_lookup,
  processor_customer_id_lookup
)
values (
  '00000000-0000-4000-8000-0000000d0001', '00000000-0000-4000-8000-00000000a001',
  'credit_card', 'visa', '4242', 12, 2030, 'Everyday Visa', true,
  '{"v": 1, "alg": "A256GCM+A256KW", "kid": "seed-demo",
    "wrapped_key": "2K5v0eHd9QHueNTuy67MDIgTbcQu4OVoeCidHBhV2hLBmYnf1nI_-Q",
    "nonce": "FIapOjgjVog_-FV_", "ciphertext": "prYA9HWlQTO4sb-YC-EJNSFsRxtFxCMDnDWz8un4"}',
  'seed-demo:dlacm3iRHD3Z8xQheApnnpQVStYgMvHHNZij2BPb7ZM',
  'seed-demo:SEx5QYLXOiT8P5sZ74LmzUgGGK130PG-joHK8qLYMNA'
)
on conflict (id) do nothing;

-- Carl's connected account, as onboarding records it (payment_service), then his bank account on it.
insert into public.processor_accounts (
  id, user_id, processor_account_id_sealed, processor_account_id_lookup
)
values (
  '00000000-0000-4000-8000-0000000e00a1', '00000000-0000-4000-8000-00000000c001',
  '{"v": 1, "alg": "A256GCM+A256KW", "kid": "seed-demo",
    "wrapped_key": "9Nq_x_ZGxyD2zVg51pK9xgTFDxyvwj5NvYOKni3MRukYi65C4xl8YA",
    "nonce": "mhKg_Ij-8RVC64Oi", "ciphertext": "ETCictky9k6V3qSkpP8cPdw_5PihZ1WIHBxfegoy"}',
  'seed-demo:8-EVEPYur-zcFL5ZMnyQNArx6WM9J8E5etJh5EbaxtE'
)
on conflict (id) do nothing;

insert into public.payout_methods (
  id, user_id, type, bank_name, last4, currency, nickname, is_default,
  processor_external_account_id_sealed, processor_external_account_id_lookup,
  processor_account_id_lookup
)
values (
  '00000000-0000-4000-8000-0000000e0001', '00000000-0000-4000-8000-00000000c001',
  'bank_account', 'First Demo Bank', '6789', 'USD', 'Business checking', true,
  '{"v": 1, "alg": "A256GCM+A256KW", "kid": "seed-demo",
    "wrapped_key": "VQ2x45TNPPXhb50LJ_e8EcqjnTc66N608nPzLegE-YF4yWRT29HGNw",
    "nonce": "C0l4DNs71slXme8B", "ciphertext": "iEvfmWzi5mdRT6eFHL0FFhw1ap9FD2VfwIbyOnvl"}',
  'seed-demo:evSIohHBDIoR3xNR4N_Voo61f4tUZpUsNrdmvcT6lvA',
  'seed-demo:8-EVEPYur-zcFL5ZMnyQNArx6WM9J8E5etJh5EbaxtE'
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
