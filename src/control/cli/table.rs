//! Plain-text tables as kubectl prints them: a header row, columns padded to
//! their widest cell and three spaces apart, no trailing blanks.

/// Renders `header` and `rows` (each as long as `header`) with a final newline.
pub(super) fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(&widths) {
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', width - cell.chars().count() + 3));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn pads_columns_to_the_widest_cell() {
        let rows = vec![
            vec![
                "waypoint".to_string(),
                "default".to_string(),
                "".to_string(),
            ],
            vec!["wp".to_string(), "canary".to_string(), "x".to_string()],
        ];
        assert_eq!(
            render(&["NAME", "REVISION", "X"], &rows),
            "NAME       REVISION   X\nwaypoint   default\nwp         canary     x\n"
        );
    }
}
