from payguard.cli import main

main()
