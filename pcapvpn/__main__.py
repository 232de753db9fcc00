from pcapvpn.cli import main

main()
