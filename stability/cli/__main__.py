from stability.cli import main

main()
