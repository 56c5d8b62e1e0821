-- Demo data for a local stack: a homeowner and a contractor who can sign in.
-- Re-running the seed is harmless: rows that exist are left alone.
insert into auth.users (id, aud, role, email, email_confirmed_at, raw_app_meta_data, raw_user_meta_data)
values
  (
    '00000000-0000-4000-8000-00000000a001', 'authenticated', 'authenticated',
    'hana.homeowner@example.com', now(), '{"provider": "email"}', '{"display_name": "Hana"}'
  ),
  (
    '00000000-0000-4000-8000-00000000c001', 'authenticated', 'authenticated',
    'carl.contractor@example.com', now(), '{"provider": "email"}', '{"display_name": "Carl"}'
  )
on conflict (id) do nothing;
