from agproxy.cli import main

main()
